import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # test helpers such as mpi_launch

# Open MPI's launcher (the venv made for it by scripts/setup.sh, .venv-ompi) refuses to start
# more ranks than cores (the tests start 4 on 2-core boxes) and to run as root (CI
# containers); MPICH's ignores these variables.
for _name, _value in {
    "PRTE_MCA_rmaps_default_mapping_policy": ":oversubscribe",
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
}.items():
    os.environ.setdefault(_name, _value)
