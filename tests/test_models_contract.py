"""A user's own model through the contract: written from the tutorial or with only the required methods, refused in one line when it cannot run, and the layout that keeps the core free of the transformer."""

import functools
import sys
from pathlib import Path
from typing import ClassVar

import equinox as eqx
import jax
import numpy as np
import pytest

from flowsim import models

TIGHT = dict(rtol=1e-12, atol=1e-14)

EXAMPLES = str(Path(__file__).resolve().parent.parent / "examples")


@pytest.fixture
def teacher_student(monkeypatch):
    monkeypatch.syspath_prepend(EXAMPLES)
    return models.load("teacher_student:make_model", width=4, n=16)


def test_a_users_model_resumes_bit_identical(teacher_student):
    """A run stopped after its first chunk and resumed from that checkpoint ends exactly where an
    uninterrupted run does, events and saves included."""
    with jax.enable_x64(True):
        params, data = models.draw(teacher_student, 1, "standard")
    run = functools.partial(models.integrate, teacher_student, params, data, 50.0, saves=9, chunk=4)
    checkpoints = []
    whole = run(callback=checkpoints.append)
    assert len(checkpoints) == 1 and checkpoints[0].status == "running"
    resumed = run(resume=checkpoints[0])
    assert resumed.events == whole.events and whole.events["fits"] is not None
    for k, v in whole.observables.items():
        np.testing.assert_array_equal(resumed.observables[k], v, err_msg=k)
    jax.tree.map(np.testing.assert_array_equal, resumed.params_final, whole.params_final)
    # The event against the saves: before it the loss is above 1% of its start, after it below.
    loss, t = whole.observables["loss"], whole.ts
    assert loss[t < whole.events["fits"]].min() > 1e-2 * loss[0] > loss[t > whole.events["fits"]].max()


@pytest.mark.parametrize("spec, message", [
    ("nope", "one of saxe, zfb or module:factory"),
    ("no_such_module_xyz:make", "cannot import module 'no_such_module_xyz'"),
    ("teacher_student:missing", "has no function 'missing'"),
    ("builtins:dict", "returned a dict, not a flowsim.models.AbstractModel"),
    ("teacher_student:Student", "does not take these sizes"),
])
def test_model_specs_are_refused_with_one_line(teacher_student, spec, message):
    with pytest.raises(ValueError, match=message):
        models.load(spec)


def test_integer_parameters_are_refused(teacher_student):
    with jax.enable_x64(True):
        params, data = models.draw(teacher_student, 0)
    with pytest.raises(TypeError, match="floating array"):
        models.integrate(teacher_student, eqx.tree_at(lambda p: p.a, params, np.arange(4)), data, 1.0)
    with pytest.raises(ValueError, match="scheme must be one of small, standard"):
        models.draw(teacher_student, 0, "huge")


def test_the_core_and_the_generic_models_import_no_transformer_module():
    """The layout's rule (docs/architecture.md): with flowsim.models.cooccurrence made
    unimportable, every module of the core, the generic model machinery and the outside models
    imports; a module that reached into the transformer would fail here."""
    import subprocess

    code = ("import sys, pkgutil, importlib\nsys.modules['flowsim.models.cooccurrence'] = None\n"
            "import flowsim.core\n"
            "for m in pkgutil.iter_modules(flowsim.core.__path__): importlib.import_module('flowsim.core.' + m.name)\n"
            "from flowsim import models\nimport flowsim.models.contract, flowsim.models.generic, flowsim.models.flow\n"
            "import flowsim.models.saxe, flowsim.models.zfb\nprint('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr


class _Decay(models.AbstractModel):
    """The least a model needs (no events, observables, claims or reference): a quadratic loss
    0.5 sum_i a_i (w_i - c_i)^2, whose flow is w_i(t) = c_i + (w_i(0) - c_i) e^{-a_i t}."""

    name: ClassVar[str] = "decay"
    SCHEMES: ClassVar[tuple[str, ...]] = ("ones",)
    OBSERVABLES: ClassVar[dict[str, str]] = {}

    def sample_data(self, key):
        return {"a": jax.numpy.array([0.5, 1.0, 2.0]), "c": jax.numpy.array([1.0, -2.0, 3.0])}

    def init(self, key, scheme):
        return {"w": jax.numpy.ones(3)}

    def loss(self, params, data):
        return 0.5 * jax.numpy.sum(data["a"] * (params["w"] - data["c"]) ** 2)

    def claims(self):
        return ()


def test_a_model_with_only_the_required_methods_follows_its_closed_form():
    """The contract's defaults (no events, no observables, no reference) integrate: the flow of
    a quadratic loss matches its exponential closed form at every save; the core observables
    loss and grad_norm2 match theirs."""
    model = _Decay()
    with jax.enable_x64(True):
        params, data = models.draw(model, 0)
        result = models.integrate(model, params, data, 6.0, saves=13, grid="linear", **TIGHT)
    a, c = np.array([0.5, 1.0, 2.0]), np.array([1.0, -2.0, 3.0])
    w = c + (1.0 - c) * np.exp(-np.outer(result.ts, a))
    assert result.events == {} and result.status == "complete"
    np.testing.assert_allclose(np.asarray(result.params_final["w"]), w[-1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result.observables["loss"], 0.5 * np.sum(a * (w - c) ** 2, axis=1), rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(result.observables["grad_norm2"], np.sum((a * (w - c)) ** 2, axis=1), rtol=1e-8, atol=1e-14)


def test_a_name_the_trajectory_holds_cannot_be_an_observable():
    class Clash(_Decay):
        OBSERVABLES: ClassVar[dict[str, str]] = {"rtol": "a name the trajectory holds"}
    with pytest.raises(ValueError, match="rtol"):
        models.check(Clash(), {"w": np.ones(3)}, None)
