"""The ranking study (`psvit-nas study`), top-down: the plan (`plan`: architectures, and the jobs of each stage),
its run (`study`: the jobs as parallel Ray Tune trials, `jobs` and `runner`), the analysis (`results`: plain
data from the records) and the report (`report`)."""
from .plan import Plan
from .results import analyse
from .report import write_results
from .settings import StudySettings
from .study import STAGES, Study, check_stages, trials_at_once

__all__ = ["STAGES", "Plan", "Study", "StudySettings", "analyse", "check_stages", "trials_at_once", "write_results"]
