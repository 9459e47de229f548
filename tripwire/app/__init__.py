"""The application layer: what wires the parts into commands and processes.

The ``tripwire`` command (``cli``), the local stack (``stack``), the detector workers'
prefork standby (``zygote``), and the product commands built on them: the demo (``demo``,
with its simulated cameras ``camera_sim`` and synthetic ``scenes``) and the energy
benchmark (``energy``). Modules here may import everything (the core, functions/, gateway/,
console/); the core, the functions, the gateway and the console never import this package,
and nothing here imports loadtest/ (`lint-imports` checks it).
"""
