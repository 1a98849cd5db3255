"""The generic engine: any model's parameters as the state, its gradient flow by autodiff, its observables and events through the model contract."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PyTree

from ..core.contract import OWN_DATA, AbstractFlowEngine, leaves_of
from .contract import AbstractModel


class ModelArgs(eqx.Module):
    """What the generic engine's vector field, events and observables read besides the state."""

    data: PyTree  # the training set (None for a population loss)
    ref: PyTree  # AbstractModel.reference of the start
    watching: jax.Array  # bool (n_events,): the events not located yet


class GenericEngine(AbstractFlowEngine):
    """``d theta/dt = -grad_theta L(theta)`` on the model's own parameter pytree, the gradient by
    reverse-mode autodiff of :meth:`AbstractModel.loss`; the core ravels the state into one
    vector for the solver.  Observables: :data:`~flowsim.models.contract.CORE_OBSERVABLES`
    (``loss``, ``grad_norm2 = ||grad L||^2 = -dL/dt``) and the model's own."""

    model: AbstractModel
    structure: jax.tree_util.PyTreeDef = eqx.field(static=True)  # of the parameters, for params_of

    #: The model's code is the user's: compiled in memory, never served from flowsim's cache.
    exportable: ClassVar[bool] = False

    @property
    def event_names(self) -> tuple[str, ...]:
        return tuple(self.model.event_names)

    @classmethod
    def args_axes(cls, batched) -> ModelArgs:
        data = 0 if batched == OWN_DATA else None
        return ModelArgs(data=data, ref=0, watching=0)

    def gradient(self, y: PyTree, args: ModelArgs) -> PyTree:
        return jax.grad(self.model.loss)(y, args.data)

    def vector_field(self, t, y: PyTree, args: ModelArgs) -> PyTree:
        return jax.tree.map(jnp.negative, self.gradient(y, args))

    def observe(self, y: PyTree, args: ModelArgs) -> dict[str, Array]:
        loss, grad = jax.value_and_grad(self.model.loss)(y, args.data)
        norm2 = sum(jnp.sum(g**2) for g in jax.tree.leaves(grad))
        return {"loss": loss, "grad_norm2": norm2, **self.model.observables(y, args.data, args.ref)}

    def event_values(self, t, y: PyTree, args: ModelArgs) -> tuple[Array, ...]:
        return tuple(self.model.event_values(t, y, args.data, args.ref))

    def final_leaves(self, y: PyTree, args: ModelArgs) -> tuple:
        return leaves_of(y)

    def params_of(self, leaves: tuple) -> PyTree:
        return jax.tree.unflatten(self.structure, leaves)
