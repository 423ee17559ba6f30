"""Mesh specs, partition rules, and sharded forward passes equal to one device (8 simulated CPUs)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hf_tiny import padded_batch, save_hf_model
from jax.sharding import PartitionSpec as P

from r2rank_jax.mesh import MeshError, make_mesh, param_shardings, parse_mesh_spec, spec_for
from r2rank_jax.models.hf_port import load_hf

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (simulated) devices: set XLA_FLAGS first")


def test_parse_mesh_spec():
    assert parse_mesh_spec("data:2,fsdp:2,tensor:2", 8) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert parse_mesh_spec("fsdp:8", 8) == {"data": 1, "fsdp": 8, "tensor": 1}
    assert parse_mesh_spec("auto", 8) == {"data": 8, "fsdp": 1, "tensor": 1}
    with pytest.raises(MeshError, match="needs 6 devices but 8 are available"):
        parse_mesh_spec("data:3,fsdp:2", 8)
    with pytest.raises(MeshError, match="bad entry 'model:2'"):
        parse_mesh_spec("model:2,data:4", 8)
    with pytest.raises(MeshError, match="axis 'data' given twice"):
        parse_mesh_spec("data:2,data:4", 8)
    with pytest.raises(MeshError, match="must be a positive integer"):
        parse_mesh_spec("data:x", 8)


def test_partition_rules_cover_every_parameter_and_check_divisibility(tmp_path):
    save_hf_model("qwen2_tied_gqa", tmp_path)
    model = load_hf(tmp_path)
    mesh = make_mesh("data:2,fsdp:2,tensor:2")
    shardings = param_shardings(nnx.to_pure_dict(nnx.split(model)[1]), mesh)
    specs = {jax.tree_util.keystr(p): s.spec for p, s in jax.tree_util.tree_flatten_with_path(shardings)[0]}
    assert specs["['layers'][0]['attn']['q_proj']"] == P("fsdp", "tensor", None)
    assert specs["['layers'][1]['mlp']['down_proj']"] == P("tensor", "fsdp")
    assert specs["['embed']"] == P("tensor", "fsdp")
    with pytest.raises(MeshError, match=r"'layers/0/attn/k_proj' \(48, 2, 8\): dimension 1 \(size 2\) is not divisible by mesh axis 'tensor' of size 4"):
        spec_for("layers/0/attn/k_proj", (48, 2, 8), make_mesh("data:2,tensor:4"))
    with pytest.raises(MeshError, match="no partition rule matches parameter 'layers/0/attn/rotary'"):
        spec_for("layers/0/attn/rotary", (4,), mesh)


@pytest.mark.parametrize("spec", ["data:2,fsdp:2,tensor:2", "fsdp:8"])
def test_sharded_forward_equals_single_device(tmp_path, spec):
    save_hf_model("qwen2_tied_gqa", tmp_path)
    single = load_hf(tmp_path)
    tokens, positions, mask = padded_batch(single.config.vocab_size, lengths=(11, 4, 8, 6, 2, 9, 11, 5))
    ref = single(jnp.asarray(tokens), jnp.asarray(positions), logits_at="all")

    mesh = make_mesh(spec)
    sharded = load_hf(tmp_path, mesh=mesh)
    q = sharded.layers[0].attn.q_proj[...]
    assert len(q.sharding.device_set) == 8 and not q.sharding.is_fully_replicated

    @nnx.jit
    def forward(model, tokens, positions):
        return model(tokens, positions, logits_at="all")

    with jax.set_mesh(mesh):
        out = forward(sharded, jnp.asarray(tokens), jnp.asarray(positions))
    real = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(out.logits)[real], np.asarray(ref.logits)[real], atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.hidden)[real], np.asarray(ref.hidden)[real], atol=1e-5)
