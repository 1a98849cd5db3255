"""One compiled program per (sizes, engine), whatever the seed: the row engines' state does not depend on which words a seed draws (docs/architecture.md)."""

import collections

import jax
import numpy as np

import flowsim


def test_one_compiled_solve_serves_every_seed():
    """The paper preset's draws hold 58 to 62 distinct words: five seeds trace and compile the
    programs of a run once, for the first seed."""
    events = collections.Counter()
    compiled = lambda: sum(v for k, v in events.items() if "trace" in k or "backend_compile" in k)
    listener = lambda name, duration, **kw: events.update([name])
    built = [flowsim.RunConfig.preset("paper").merge({"seed": s}).build() for s in range(5)]
    assert len({len(np.unique(np.asarray(data.tokens))) for data, _, _ in built}) >= 3
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        traced = []
        for data, params, key in built:
            before = compiled()
            result = flowsim.integrate(params, data, 0.05, saves=2, n_test=20, test_key=key)
            traced.append(compiled() - before)
            assert result.options.engine == "reduced"
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert traced[1:] == [0, 0, 0, 0], traced
