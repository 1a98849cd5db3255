"""A user's own model in about fifty lines: a two-layer erf student learning an erf teacher, the soft committee machine of Saad and Solla (1995) (docs/models.md).

    python teacher_student.py                                 # integrate and print the claims (run in examples/)
    flowsim integrate --model teacher_student:make_model --model-option width=4 --t-end 200 --out runs/teacher
    flowsim report runs/teacher && flowsim plot runs/teacher  # from the CLI, in examples/
"""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from flowsim import models
from flowsim.reporting import format_table


class Student(eqx.Module):
    W: jax.Array  # (width, d_in): first-layer weights
    a: jax.Array  # (width,): second-layer weights


class TeacherStudent(models.AbstractModel):
    """f(x) = a^T erf(W x / sqrt(2)) fitted by square loss to a fixed teacher of the same form, on n Gaussian inputs
    (a smooth activation: a ReLU's kinks make the flow non-smooth, and an adaptive solver crawls across them)."""

    teacher: Student
    n: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    scale: float = eqx.field(static=True)

    name: ClassVar[str] = "teacher_student"
    SCHEMES: ClassVar[tuple[str, ...]] = ("small", "standard")
    OBSERVABLES: ClassVar[dict[str, str]] = {"teacher_alignment": "max_j cos(w_j, w*_1)"}

    @property
    def event_names(self):
        return ("fits",)  # the loss falls below 1% of its start

    def sample_data(self, key):
        x = jax.random.normal(key, (self.n, self.teacher.W.shape[1]))
        return x, self.f(self.teacher, x)

    def init(self, key, scheme):
        k1, k2 = jax.random.split(key)
        std = self.scale if scheme == "small" else 1.0
        d_in = self.teacher.W.shape[1]
        return Student(W=std * jax.random.normal(k1, (self.width, d_in)) / jnp.sqrt(d_in),
                       a=std * jax.random.normal(k2, (self.width,)) / jnp.sqrt(self.width))

    @staticmethod
    def f(params, x):
        return jax.scipy.special.erf(x @ params.W.T / jnp.sqrt(2.0)) @ params.a

    def loss(self, params, data):
        x, y = data
        return 0.5 * jnp.mean((self.f(params, x) - y) ** 2)

    def reference(self, params0, data):
        return self.loss(params0, data)

    def observables(self, params, data, ref):
        w1 = self.teacher.W[0] / jnp.linalg.norm(self.teacher.W[0])
        cos = params.W @ w1 / jnp.linalg.norm(params.W, axis=1)
        return {"teacher_alignment": cos.max()}

    def event_values(self, t, params, data, ref):
        return (1e-2 * ref - self.loss(params, data),)

    def claims(self):  # checked on the saved trajectory (a dict of "t", the observables and the event times)
        return (models.ModelClaim(
            "teacher_student.loss_decreases", "The training loss never increases along the gradient flow",
            "dL/dt = -||grad L||^2", "largest rise of the loss between saves, relative to L(0), at most 1e-9",
            lambda traj, model: models.at_most(max(np.diff(traj["loss"]).max(), 0.0) / traj["loss"][0], 1e-9)),)


def make_model(d_in: int = 5, teacher_width: int = 2, width: int = 8, n: int = 64, scale: float = 0.1, seed: int = 0):
    with jax.enable_x64(True):
        k = jax.random.key(seed)
        teacher = Student(W=jax.random.normal(k, (teacher_width, d_in)) / jnp.sqrt(d_in), a=jnp.ones(teacher_width))
    return TeacherStudent(teacher=teacher, n=n, width=width, scale=scale)


if __name__ == "__main__":
    model = make_model()
    with jax.enable_x64(True):
        params, data = models.draw(model, seed=1, scheme="standard")
    result = models.integrate(model, params, data, t_end=200.0, progress=True)
    print(f"loss {result.observables['loss'][0]:.4g} -> {result.observables['loss'][-1]:.4g}; "
          f"fits at t = {result.events['fits']}")
    print(format_table(models.check_claims(result, model)))
