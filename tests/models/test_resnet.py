import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdnet_jax import models

PUBLISHED = {  # parameter counts: SDNet's = ResNet's (torchvision / SDNet repo)
    ("resnet18", "cifar"): 11_173_962,
    ("sdnet18", "cifar"): 11_173_962,
    ("sdnet18_all", "cifar"): 11_173_962,
    ("resnet18", "imagenet"): 11_689_512,
    ("sdnet18", "imagenet"): 11_689_512,
    ("resnet34", "cifar"): 21_282_122,
    ("sdnet34", "cifar"): 21_282_122,
    ("sdnet34_all", "cifar"): 21_282_122,
    ("resnet34", "imagenet"): 21_797_672,
    ("sdnet34", "imagenet"): 21_797_672,
}


def _abstract_variables(model, hw):
    return jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, hw, hw, 3))), jax.random.key(0))


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize("name,stem", sorted(PUBLISHED))
def test_parameter_counts_match_published(name, stem):
    num_classes = 10 if stem == "cifar" else 1000
    model = models.get_model(name, num_classes=num_classes, stem=stem)
    variables = _abstract_variables(model, 32 if stem == "cifar" else 224)
    assert _count(variables["params"]) == PUBLISHED[(name, stem)]


def test_every_csc_layer_is_where_the_design_says():
    def csc_layers(name, stem):
        model = models.get_model(name, num_classes=10, stem=stem)
        params = _abstract_variables(model, 32 if stem == "cifar" else 224)["params"]
        flat = jax.tree_util.tree_flatten_with_path(params)[0]
        return sorted(
            "/".join(k.key for k in path[:-1]) for path, _ in flat if path[-1].key == "dictionary"
        )

    assert csc_layers("resnet18", "cifar") == []
    assert csc_layers("sdnet18", "cifar") == ["stem_csc"]
    all_layers = csc_layers("sdnet18_all", "imagenet")
    assert len(all_layers) == 2 + 2 * 8  # 7x7 stem, the 3x3/2 stem CSC in place of max-pool, 16
    assert "stem_csc2" in all_layers
    # projections stay ordinary convolutions
    assert not any("proj" in name for name in all_layers)


def test_registry_errors_name_the_valid_choices():
    with pytest.raises(ValueError, match=r"valid names.*resnet18"):
        models.get_model("resnet19", num_classes=10)
    with pytest.raises(ValueError, match="valid"):
        models.get_model("sdnet18", num_classes=10, csc={"lamda": 0.1})
    with pytest.raises(ValueError, match="stem"):
        _abstract_variables(models.get_model("sdnet18", num_classes=10, stem="mnist"), 32)


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_model_traces_to_logits(name):
    model = models.get_model(name, num_classes=7, width=4, csc={"num_iters": 2})
    x = jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    assert logits.shape == (2, 7) and logits.dtype == jnp.float32


# the 34-layer variants are the 18-layer ones with other stage sizes: compiled at depth 18 only
@pytest.mark.parametrize("name", ["resnet18", "sdnet18", "sdnet18_all", "sdnet18_all_noshortcut"])
def test_forward_under_jit(name):
    model = models.get_model(name, num_classes=7, width=4, csc={"num_iters": 2})
    x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
    variables = jax.jit(model.init)(jax.random.key(0), x)
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
    assert logits.shape == (2, 7) and logits.dtype == jnp.float32
    assert np.all(np.isfinite(logits))
    if "noshortcut" not in name:  # without shortcuts, width-4 codes can all be thresholded away
        assert np.std(logits) > 0


def test_train_mode_updates_state_and_lambda_reaches_csc_layers():
    # jitted (λ traced): one compile per program instead of op-by-op dispatch
    model = models.get_model("sdnet18", num_classes=5, width=4)
    x = jax.random.normal(jax.random.key(1), (4, 16, 16, 3))
    variables = jax.jit(model.init)(jax.random.key(0), x)
    train = jax.jit(
        lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats", "power_iteration"])
    )
    _, new = train(variables, x)
    for col in ("batch_stats", "power_iteration"):
        changed = jax.tree_util.tree_map(
            lambda a, b: not np.allclose(a, b), variables[col], new[col]
        )
        assert any(jax.tree_util.tree_leaves(changed)), col
    apply = jax.jit(lambda v, x, **kw: model.apply(v, x, **kw))
    eval_logits = apply(variables, x)
    assert not np.allclose(apply(variables, x, lam=0.5), eval_logits)
    assert not np.allclose(apply(variables, x, stem_lam=0.5), eval_logits)
    resnet = models.get_model("resnet18", num_classes=5, width=4)
    rv = jax.jit(resnet.init)(jax.random.key(0), x)
    apply_resnet = jax.jit(lambda v, x, **kw: resnet.apply(v, x, **kw))
    np.testing.assert_array_equal(apply_resnet(rv, x, lam=0.5), apply_resnet(rv, x))


def test_bfloat16_compute_and_imagenet_shapes():
    model = models.get_model("sdnet18_all", num_classes=3, width=4, dtype=jnp.bfloat16)
    x = jnp.ones((1, 32, 32, 3))
    variables = jax.jit(model.init)(jax.random.key(0), x)
    assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(variables["params"]))
    assert jax.jit(model.apply)(variables, x).dtype == jnp.float32
    for stem, hw in [("cifar", 32), ("imagenet", 224)]:
        m = models.get_model("sdnet18", num_classes=10, stem=stem)
        v = _abstract_variables(m, hw)
        out = jax.eval_shape(lambda v, m=m, hw=hw: m.apply(v, jnp.zeros((2, hw, hw, 3))), v)
        assert out.shape == (2, 10)
