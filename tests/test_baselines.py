"""The hand-designed layer family: its stacks, their MACs ladder, and a bad depth as bad input."""
import subprocess
import sys

import pytest

from psvit_nas import SearchSpace
from psvit_nas.baselines import family_depths, layer_family
from psvit_nas.errors import ConfigError

SPACE = "search_spaces/tiny_imagenet.yaml"


def test_family_builds_named_stacks_on_a_rising_ladder():
    space = SearchSpace.from_yaml(SPACE)
    family = layer_family(space)
    assert list(family) == [f"layers{d}" for d in family_depths(space)]
    for name, arch in family.items():
        depth = int(name[len("layers"):])
        for cells in arch.stages:
            assert cells == ("layer",) * depth + ("identity",) * (len(cells) - depth)
    macs = [space.cost_table.macs(a) for a in family.values()]
    assert macs == sorted(macs) and len(set(macs)) == len(macs)
    deepest = family[f"layers{family_depths(space)[-1]}"]
    assert all(set(cells) == {"layer"} for cells in deepest.stages)  # the all-layer stack
    assert list(layer_family(space, (2, 1))) == ["layers1", "layers2"]


@pytest.mark.parametrize("depths", [(0,), (7,), (2, 2)])
def test_bad_depth_is_one_line_naming_the_option(depths):
    with pytest.raises(ConfigError, match="--family"):
        layer_family(SearchSpace.from_yaml(SPACE), depths)


def test_study_cli_refuses_a_bad_depth_with_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "psvit_nas.cli", "study", "--config", SPACE, "--data", "digits",
                           "--out", str(tmp_path / "s"), "--family", "9"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "--family" in proc.stderr
    assert not (tmp_path / "s").exists()
