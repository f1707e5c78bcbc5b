"""Gate-and-route: the fluid LP of prefill/decode contention and the admission and routing
policies it parameterises, their discrete-event simulator and the replica pools the fleet
simulator runs them in, and the engine iteration model they rest on.

    fluid_lp.py         the fluid LPs (bundled, separate, SLI-targeted)
    instance.py         a gate-and-route instance (classes, iteration model, SLOs)
    plan.py             gate_route_plan: the LP's parameters for one deployment of a plan
    policies.py         the policies (gate-and-route, baselines) from those parameters
    sim.py              the discrete-event simulator of one replica pool under a policy
    pool.py             replica pools running a policy inside the fleet simulator
    iteration_model.py  tau(C) = alpha + beta C, fitted from engine iteration timings
"""
