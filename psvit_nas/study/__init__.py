"""The ranking study (`psvit-nas study`): choosing architectures, jobs, records, statistics, report."""
from .results import analyse
from .report import write_results
from .settings import StudySettings
from .study import STAGES, Study, check_stages, trials_at_once

__all__ = ["STAGES", "Study", "StudySettings", "analyse", "check_stages", "trials_at_once", "write_results"]
