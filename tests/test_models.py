"""robustmap.models: the zoo's contract (any-size [0, 1] images -> logits), real predictions on
photos shipped with scikit-image, weights through a real local HTTP server, and safe loading."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import keras
import numpy as np
import pytest
import skimage.data

from robustmap import heatmaps, models
from robustmap.fetch import ChecksumError
from robustmap.models import efficientnet_lite
from robustmap.weights import read_torch_state_dict

LITES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
MOBILENET_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"


def photo(name: str) -> np.ndarray:
    """A scikit-image photo as float32 [1, H, W, 3] in [0, 1]."""
    return (getattr(skimage.data, name)().astype(np.float32) / 255.0)[None]


def random_images(n: int, size: int, *, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, size, size, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def lite0() -> keras.Model:
    return models.load("efficientnet_lite0")


def assert_gradcam_reachable(model: keras.Model, images: np.ndarray) -> None:
    """The Grad-CAM layer and the logits come out of one model built on the flat graph."""
    assert not any(isinstance(layer, keras.Model) for layer in model.layers), "nested sub-model"
    layer = model.get_layer(models.gradcam_layer(model))
    both = keras.Model(model.inputs, [layer.output, model.output])
    features, logits = both.predict(images, verbose=0)
    assert features.ndim == 4 and features.shape[0] == len(images)
    np.testing.assert_allclose(logits, model.predict(images, verbose=0), atol=1e-5)


def test_lite0_block_configuration_derived_from_the_state_dict():
    state = read_torch_state_dict(models.ZOO["efficientnet_lite0"].weights_file())

    blocks = efficientnet_lite.block_configs(state)

    assert [b.kernel_size for b in blocks] == [3, 3, 3, 5, 5, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 3]
    assert [b.stride for b in blocks] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
    assert [b.stage for b in blocks] == [0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 5, 6]
    assert [b.out_channels for b in blocks[::3]] == [16, 40, 80, 112, 192, 320]
    assert [b.has_skip for b in blocks].count(True) == 9
    assert not blocks[0].has_expansion and all(b.has_expansion for b in blocks[1:])


@pytest.mark.parametrize("size", [64, 224])
def test_lite0_maps_any_size_to_logits(lite0, size):
    images = random_images(2, size)

    logits = lite0.predict(images, verbose=0)

    assert lite0.name == "efficientnet_lite0"
    assert lite0.input_shape == (None, None, None, 3)
    assert logits.shape == (2, 1000) and logits.dtype == np.float32
    assert np.isfinite(logits).all()
    assert not np.allclose(logits.sum(axis=1), 1.0)  # logits, not probabilities
    np.testing.assert_array_equal(lite0.predict(images, verbose=0), logits)  # deterministic


def test_eager_call_matches_predict(lite0):
    # Guards against preprocessing layers that flip BatchNormalization into training mode.
    images = photo("chelsea")
    np.testing.assert_allclose(lite0(images).numpy(), lite0.predict(images, verbose=0), atol=1e-4)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("chelsea", 285), ("coffee", 967)],  # 285 Egyptian cat, 967 espresso
)
def test_lite0_top1_on_real_photos(lite0, name, expected):
    assert lite0.predict(photo(name), verbose=0).argmax() == expected


def test_lite0_gradcam_layer(lite0):
    assert models.gradcam_layer(lite0) == "_head_relu6"
    assert_gradcam_reachable(lite0, random_images(1, 96))


@pytest.mark.parametrize("name", LITES[1:])
def test_larger_lites(name):
    model = models.load(name)

    assert model.name == name
    assert models.native_size(name) == {"efficientnet_lite1": 240, "efficientnet_lite2": 260}[name]
    assert model.predict(photo("chelsea"), verbose=0).argmax() == 285  # Egyptian cat
    assert model.predict(photo("coffee"), verbose=0).argmax() == 967  # espresso
    assert_gradcam_reachable(model, random_images(1, 64))


def test_load_from_pth_path_identifies_the_architecture():
    path = models.ZOO["efficientnet_lite0"].weights_file()
    assert models.load(str(path)).name == "efficientnet_lite0"


def test_from_options_with_gradcam_override():
    model = models.from_options({"zoo": "efficientnet_lite0", "gradcam_layer": "_blocks.15._bn2"})
    assert models.gradcam_layer(model) == "_blocks.15._bn2"
    with pytest.raises(ValueError, match="No such layer"):
        models.from_options({"zoo": "efficientnet_lite0", "gradcam_layer": "nonexistent"})


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="neither a zoo model"):
        models.load("no_such_model")


# --- Keras applications: weights over real HTTP, checksummed and cached ------------------------


@pytest.fixture(scope="module")
def served_mobilenet(tmp_path_factory):
    """A randomly initialised MobileNetV2 saved in the official file's format and name, served
    over HTTP on 127.0.0.1; yields (mirror URL, SHA-256, reference model)."""
    keras.utils.set_random_seed(0)
    reference = keras.applications.MobileNetV2(weights=None, classifier_activation=None)
    root = tmp_path_factory.mktemp("served")
    (root / "weights").mkdir()
    path = root / "weights" / MOBILENET_FILE
    reference.save(path)  # legacy HDF5, like the published Keras-applications files
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/weights", digest, reference
    finally:
        server.shutdown()
        server.server_close()


def test_mobilenet_v2_weights_fetched_over_http(served_mobilenet, tmp_path):
    mirror, digest, reference = served_mobilenet
    cache = tmp_path / "cache"
    images = random_images(2, 224, seed=1)

    model = models.load("mobilenet_v2", sha256=digest, mirror=mirror, cache_dir=cache)

    assert model.name == "mobilenet_v2"
    assert (cache / MOBILENET_FILE).is_file()
    expected = reference.predict(2.0 * images - 1.0, verbose=0)  # resize is the identity at 224
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, atol=1e-4)
    assert model.predict(random_images(1, 100), verbose=0).shape == (1, 1000)
    assert_gradcam_reachable(model, images[:1])


def test_bad_checksum_is_refused_and_nothing_cached(served_mobilenet, tmp_path):
    mirror, _digest, _reference = served_mobilenet
    cache = tmp_path / "cache"

    with pytest.raises(ChecksumError, match="SHA-256 mismatch"):
        models.load("mobilenet_v2", sha256="0" * 64, mirror=mirror, cache_dir=cache)

    assert not cache.exists() or not any(cache.iterdir())


def test_mirror_without_checksum_is_refused_before_any_download(served_mobilenet, tmp_path):
    mirror, _digest, _reference = served_mobilenet
    with pytest.raises(models.MissingChecksumError, match="give its sha256") as refused:
        models.load("mobilenet_v2", mirror=mirror, cache_dir=tmp_path, lock=tmp_path / "x.lock")
    assert "a mirror is never trusted on first use" in str(refused.value)
    assert list(tmp_path.iterdir()) == []


def test_lock_entry_verifies_a_mirror_download_on_another_machine(served_mobilenet, tmp_path):
    """A sha256-verified download is recorded; a second cache, with only the lock, needs no hash."""
    mirror, digest, _reference = served_mobilenet
    lock = tmp_path / "checksums.lock"
    models.load("mobilenet_v2", sha256=digest, mirror=mirror, cache_dir=tmp_path / "a", lock=lock)
    assert lock.read_text() == f"{MOBILENET_FILE}\t{digest}\n"

    model = models.load("mobilenet_v2", mirror=mirror, cache_dir=tmp_path / "b", lock=lock)

    assert model.name == "mobilenet_v2"
    assert (tmp_path / "b" / MOBILENET_FILE).read_bytes() == (
        tmp_path / "a" / MOBILENET_FILE
    ).read_bytes()


def test_publisher_checksums_of_the_zoo():
    assert models.ZOO["mobilenet_v2"].weights_md5 is None  # Keras publishes none
    assert models.ZOO["resnet50"].weights_md5 == "2cb95161c43110f7111970584f804107"
    assert models.ZOO["efficientnet_b0"].weights_md5 == "902e53a9f72be733fc0bcb005b3ebbac"


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b0"])
def test_other_keras_apps_from_local_weights(name, tmp_path):
    app = {
        "resnet50": keras.applications.ResNet50,
        "efficientnet_b0": keras.applications.EfficientNetB0,
    }
    weights = tmp_path / f"{name}.weights.h5"
    app[name](weights=None, classifier_activation=None).save_weights(weights)

    model = models.load(name, weights=weights)

    assert model.name == name
    assert model.predict(random_images(1, 80), verbose=0).shape == (1, 1000)
    assert_gradcam_reachable(model, random_images(1, 224))


# --- User .keras files ---------------------------------------------------------------------------


def small_user_model() -> keras.Model:
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, name="features")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(1000)(x), name="user_model")


def test_user_keras_file_loads_safely(tmp_path):
    model = small_user_model()
    path = tmp_path / "user.keras"
    model.save(path)
    images = random_images(2, 32)

    loaded = models.load(path)

    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0))
    assert models.gradcam_layer(loaded) == "features"


def test_user_keras_file_with_lambda_code_is_refused(tmp_path):
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)

    with pytest.raises(ValueError, match="safe_mode"):
        models.load(path)


@pytest.mark.parametrize(
    ("app", "zoo_name", "layer"),
    [
        (keras.applications.EfficientNetB0, "efficientnet_b0", "top_activation"),
        (keras.applications.MobileNetV2, "mobilenet_v2", "out_relu"),
    ],
)
def test_one_gradcam_rule_picks_the_last_map_larger_than_one_by_one(app, zoo_name, layer, tmp_path):
    """A saved application (EfficientNetB0 has squeeze-and-excite 1 x 1 maps) gets the last spatial
    map, the layer the zoo records for the same network; heatmaps has no finder of its own."""
    path = tmp_path / "user.keras"
    app(weights=None, classifier_activation=None).save(path)

    assert models.gradcam_layer(models.load(path)) == layer
    assert models.ZOO[zoo_name].gradcam_layer == layer
    assert not hasattr(heatmaps, "find_gradcam_layer")


def test_weights_file_alone_needs_a_name(tmp_path):
    path = tmp_path / "w.weights.h5"
    small_user_model().save_weights(path)
    with pytest.raises(ValueError, match="load\\(<zoo name>, weights=path\\)"):
        models.load(Path(path))
