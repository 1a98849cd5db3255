"""Check flowsim's flow against an independent SciPy integration of the same model.

SciPy's DOP853 at rtol 1e-12 integrates d theta/dt = -grad Lhat, with the gradient taken by
autodiff of Eq. (1) written on the d x L sample matrices (``flowsim.forward``), from the same
start as flowsim's default-tolerance run.  Prints the relative error of the final loss and the
largest error of G and of the attention scores at t_end.

    python examples/check_accuracy.py            # the paper's configuration, flow time 300
    python examples/check_accuracy.py --t-end 50 --n 12 --L 4 --d 8 --m 6 --m1 10
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.integrate import solve_ivp

import flowsim


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--L", type=int, default=5)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--m", type=int, default=128)
    ap.add_argument("--m1", type=int, default=256)
    ap.add_argument("--t-end", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default="kaiming")
    ns = ap.parse_args()

    config = flowsim.RunConfig.preset("paper").merge(
        {"n": ns.n, "L": ns.L, "d": ns.d, "m": ns.m, "m1": ns.m1, "seed": ns.seed, "init": ns.init})
    data, params, test_key = config.build()  # as `flowsim integrate --seed SEED` draws them

    t0 = time.perf_counter()
    run = flowsim.integrate(params, data, t_end=ns.t_end, test_key=test_key)
    print(f"flowsim (defaults): {time.perf_counter() - t0:.1f} s, {run.stats['steps']} steps, T1 = {run.phase1_end}")

    with jax.enable_x64(True):
        shapes = [params.W.shape, params.W_V.shape, params.W_K.shape, params.W_Q.shape]
        sizes = [int(np.prod(s)) for s in shapes]
        X, y, a = jnp.asarray(data.X), jnp.asarray(data.labels), jnp.asarray(params.a)

        def unflatten(theta):
            parts = jnp.split(theta, np.cumsum(sizes)[:-1])
            return flowsim.Params(*(p.reshape(s) for p, s in zip(parts, shapes)), a=a)

        @jax.jit
        def rhs(theta):
            F = lambda th: flowsim.forward(unflatten(th), X)
            return -jax.grad(lambda th: jnp.mean(jnp.log1p(jnp.exp(-y * F(th)))))(theta)

        theta0 = np.concatenate([np.asarray(x, np.float64).ravel() for x in (params.W, params.W_V, params.W_K, params.W_Q)])
        t0 = time.perf_counter()
        sol = solve_ivp(lambda t, th: np.asarray(rhs(jnp.asarray(th))), (0.0, ns.t_end), theta0,
                        method="DOP853", rtol=1e-12, atol=1e-14)
        print(f"SciPy DOP853 rtol 1e-12: {time.perf_counter() - t0:.1f} s, {sol.nfev} evaluations, success={sol.success}")
        ref = unflatten(jnp.asarray(sol.y[:, -1]))
        ref_loss = float(flowsim.loss(ref, data))
        ref_G = np.asarray(flowsim.G(ref, data.embedding))
        ref_s = np.asarray(flowsim.attention_scores(ref, data.embedding))

    o = {k: v[-1] for k, v in run.observables.items()}
    print(f"final loss   flowsim {o['loss']:.10e}  reference {ref_loss:.10e}  rel err {abs(o['loss'] / ref_loss - 1):.2e}")
    print(f"G            max abs err {np.max(np.abs(o['G'] - ref_G)):.2e} (max |G| {np.max(np.abs(ref_G)):.3g})")
    print(f"scores 1..3  max abs err {np.max(np.abs(o['scores'] - ref_s)):.2e}")


if __name__ == "__main__":
    main()
