"""``tripwire bench energy``: the energy benchmark (``bench``), its workload, frames,
accounting, duty-cycle model, report, markdown and plots."""
