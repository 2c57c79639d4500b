import sys
from pathlib import Path

# The oracle editor is plugged in by import path `oracle_editor:OracleEditor`, as a user's editor would be.
HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
