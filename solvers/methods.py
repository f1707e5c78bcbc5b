"""The solver methods, in preference order: the one list the registry (solvers/__init__.py),
the wire schemas' `Method` (schemas/events.py), the CLI and the planner derive theirs from.

No imports on purpose: the schemas read it without loading numpy, HiGHS or OR-Tools.
Order, as CVXPY's `defines.py` orders its solvers: the planner's per-window heuristic first,
then its drift-time search, the exact backends (audits: MILP before CP-SAT), and last the
baselines the benchmarks compare against.
"""
METHODS = ("gh", "agh", "milp", "cpsat", "lpr", "dvr", "hf")
EXACT = ("milp", "cpsat")
