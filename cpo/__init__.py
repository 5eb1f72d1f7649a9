"""The shared kernel: exceptions, units, clock, base models, DRF and admin plumbing. Never imports apps."""
