"""Point clouds: ``maskworks bench fps`` and ``maskworks eval points/probe``."""
BENCHES = {"fps": "maskworks.apps.commands.points:bench_fps"}
EVALS = {"points/probe": "maskworks.apps.commands.points:eval_probe"}
