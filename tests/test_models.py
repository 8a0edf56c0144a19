"""The architecture zoo: every registry entry, the published sizes, pretrained loading."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import get_model_weights
from torchvision.models import mobilenet_v3_small as torchvision_mobilenet_v3_small
from torchvision.models.inception import InceptionOutputs

from mbv3_lightning.models.complexity import complexity, layer_breakdown
from mbv3_lightning.models.pretrained import WEIGHTS_VERSION
from mbv3_lightning.models.registry import (
    count_parameters,
    create_model,
    get_spec,
    list_models,
)
from mbv3_lightning.training.inception import AUX_LOSS_WEIGHT, InceptionV3Classifier
from mbv3_lightning.training.run import run

from .conftest import FAST_OVERRIDES, assert_scored_every_test_image

# torchvision's own metadata (weights.meta["num_params"]) at 1000 classes.
TORCHVISION_PARAMS = {
    "mobilenet_v3_large": 5_483_032,
    "mobilenet_v3_small": 2_542_856,
    "mobilenet_v2": 3_504_872,
    "alexnet": 61_100_840,
    "inception_v3": 27_161_264,  # with the auxiliary classifier; 23,834,568 without
    "shufflenet_v2": 2_278_604,  # x1_0
}


def test_the_paper_and_seed_architectures_are_registered():
    assert set(list_models()) >= {*TORCHVISION_PARAMS, "mobilenet_v1"}


@pytest.mark.parametrize("name", list_models())
def test_forward_at_registry_input_size_gives_num_classes_logits(name):
    spec = get_spec(name)
    net = create_model(name, 5).eval()
    with torch.inference_mode():
        logits = net(torch.randn(1, 3, spec.input_size, spec.input_size))
    assert logits.shape == (1, 5)  # eval returns plain logits, also for InceptionV3
    for head in spec.heads:
        assert net.get_submodule(head).out_features == 5


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_parameters_at_1000_classes_equal_torchvision_metadata(name):
    net = get_spec(name).builder()
    assert count_parameters(net) == TORCHVISION_PARAMS[name]
    weights_name = get_spec(name).weights()
    assert get_model_weights(weights_name)[WEIGHTS_VERSION].meta["num_params"] == count_parameters(
        net
    )


def test_inception_without_aux_has_the_papers_parameter_count():
    net = get_spec("inception_v3").builder(aux_logits=False)
    assert count_parameters(net) == 23_834_568


@pytest.mark.parametrize(
    ("size", "params"),
    [("x0_5", 1_366_792), ("x1_0", 2_278_604), ("x1_5", 3_503_624), ("x2_0", 7_393_996)],
)
def test_shufflenet_sizes_match_torchvision(size, params):
    assert count_parameters(get_spec("shufflenet_v2").builder(size=size)) == params


def test_unknown_shufflenet_size_names_the_choices():
    with pytest.raises(ValueError, match="x0_5, x1_0, x1_5, x2_0"):
        create_model("shufflenet_v2", 3, size="x3_0")


# The MobileNet paper's Table 6 (width multiplier at 224 px): MACs (M) and parameters (M).
MOBILENET_V1_PAPER = {1.0: (569, 4.2), 0.75: (325, 2.6), 0.5: (149, 1.3), 0.25: (41, 0.5)}


@pytest.mark.parametrize("width_mult", sorted(MOBILENET_V1_PAPER))
def test_mobilenet_v1_matches_the_papers_width_multiplier_table(width_mult):
    paper_macs, paper_params = MOBILENET_V1_PAPER[width_mult]
    counts = complexity(get_spec("mobilenet_v1").builder(width_mult=width_mult), 224)
    assert counts["macs"] / 1e6 == pytest.approx(paper_macs, abs=1)
    assert counts["params"] / 1e6 == pytest.approx(paper_params, abs=0.05)
    assert counts["flops"] == 2 * counts["macs"]


def test_mobilenet_v1_relu_variant_and_bad_activation():
    net = get_spec("mobilenet_v1").builder(activation="relu")
    assert any(isinstance(m, torch.nn.ReLU) for m in net.modules())
    assert not any(isinstance(m, torch.nn.ReLU6) for m in net.modules())
    with pytest.raises(ValueError, match="relu6, relu"):
        create_model("mobilenet_v1", 3, activation="gelu")


def test_mobilenet_v1_layer_split_is_the_papers_table_2():
    """1x1 convolutions hold ~95% of the MACs and ~75% of the parameters (94.86% / 74.59%)."""
    net = get_spec("mobilenet_v1").builder()
    split = layer_breakdown(net, 224)
    assert split["pointwise conv (1x1)"]["macs_share"] == pytest.approx(0.9486, abs=0.002)
    assert split["pointwise conv (1x1)"]["params_share"] == pytest.approx(0.7459, abs=0.002)
    assert split["depthwise conv"]["macs_share"] == pytest.approx(0.0306, abs=0.002)
    assert split["fully connected"]["params_share"] == pytest.approx(0.2433, abs=0.002)
    # The hand count agrees with ptflops (which also adds the FC bias: 1,000 MACs).
    total = sum(v["macs"] for v in split.values())
    assert total == pytest.approx(complexity(net, 224)["macs"], rel=1e-5)


@pytest.mark.parametrize("name", [n for n in list_models() if get_spec(n).weights])
def test_pretrained_preprocessing_is_the_weights_own(name):
    """The registry's mean/std and default size are what the ImageNet weights were made with."""
    spec = get_spec(name)
    transforms = get_model_weights(spec.weights())[WEIGHTS_VERSION].transforms()
    assert tuple(transforms.mean) == pytest.approx(spec.mean)
    assert tuple(transforms.std) == pytest.approx(spec.std)
    assert transforms.crop_size == [spec.input_size]


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty TORCH_HOME, so torch.hub's cache is the test's own folder."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _cache_imagenet_file(torch_home: Path) -> dict[str, torch.Tensor]:
    """A random 1000-class MobileNetV3-Small saved where torchvision expects its weights."""
    weights = get_model_weights("mobilenet_v3_small")[WEIGHTS_VERSION]
    torch.manual_seed(0)
    state = torchvision_mobilenet_v3_small(weights=None).state_dict()
    target = torch_home / "hub" / "checkpoints" / os.path.basename(weights.url)
    target.parent.mkdir(parents=True)
    torch.save(state, target)
    return state


def test_pretrained_loads_the_cached_torchvision_file(torch_home, caplog):
    saved = _cache_imagenet_file(torch_home)
    with caplog.at_level(logging.INFO, logger="mbv3_lightning.models.pretrained"):
        net = create_model("mobilenet_v3_small", 4, pretrained=True)
    loaded = net.state_dict()
    backbone = [k for k in saved if not k.startswith("classifier.3.")]
    assert all(torch.equal(loaded[k], saved[k]) for k in backbone)
    assert loaded["classifier.3.weight"].shape == (4, 1024)  # new head for 4 classes
    assert "skipped 2 head keys: classifier.3.bias, classifier.3.weight" in caplog.text


def test_pretrained_offline_without_cached_file_names_the_file_and_folder(torch_home):
    expected_dir = torch_home / "hub" / "checkpoints"
    with pytest.raises(FileNotFoundError) as error:
        create_model("mobilenet_v3_small", 4, pretrained=True)
    message = str(error.value)
    assert "mobilenet_v3_small-047dcff4.pth" in message
    assert str(expected_dir) in message and "weights_path" in message
    assert not list(expected_dir.glob("*.pth"))  # nothing half-downloaded left behind


def test_pretrained_refuses_variants_without_imagenet_weights():
    with pytest.raises(ValueError, match="no ImageNet weights for mobilenet_v3_small"):
        create_model("mobilenet_v3_small", 4, pretrained=True, width_mult=0.75)
    with pytest.raises(ValueError, match="no ImageNet weights for mobilenet_v1"):
        create_model("mobilenet_v1", 4, pretrained=True)


def test_weights_path_loads_a_local_state_dict_strictly(tmp_path):
    torch.manual_seed(1)
    source = get_spec("mobilenet_v1").builder(width_mult=0.25)
    path = tmp_path / "v1.pt"
    torch.save(source.state_dict(), path)
    net = create_model("mobilenet_v1", 3, weights_path=str(path), width_mult=0.25)
    assert torch.equal(net.features[5][1][0].weight, source.features[5][1][0].weight)
    assert net.classifier[1].out_features == 3
    with pytest.raises(ValueError, match=r"135 keys of another shape.*width_mult"):
        create_model("mobilenet_v1", 3, weights_path=str(path), width_mult=0.5)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_model("mobilenet_v1", 3, weights_path=str(tmp_path / "nope.pt"))


def test_inception_training_loss_adds_the_aux_loss_with_weight_0_4():
    model = InceptionV3Classifier(
        {"arch": "inception_v3"}, 3, optimizer=None, scheduler=None, label_smoothing=0.0
    )
    targets = torch.tensor([0, 2])
    torch.manual_seed(0)
    logits, aux = torch.randn(2, 3), torch.randn(2, 3)
    loss, metric_logits = model.compute_loss(InceptionOutputs(logits, aux), targets, "train")
    expected = F.cross_entropy(logits, targets) + AUX_LOSS_WEIGHT * F.cross_entropy(aux, targets)
    assert loss.item() == pytest.approx(expected.item())
    assert metric_logits is logits  # metrics judge the main head only
    eval_loss, _ = model.compute_loss(logits, targets, "val")  # eval: plain logits
    assert eval_loss.item() == pytest.approx(F.cross_entropy(logits, targets).item())


def test_inception_aux_head_below_299_px_is_a_clear_error():
    with pytest.raises(ValueError, match=r"model\.net\.aux_logits=false"):
        InceptionV3Classifier({"arch": "inception_v3"}, 3, input_size=128)


# Smallest inputs each architecture accepts, to keep the end-to-end runs quick: AlexNet's
# three max-pools need >= 63 px; InceptionV3 needs 75 px without its auxiliary head.
E2E_INPUT = {"alexnet": ["model.input_size=64"], "inception_v3": ["model.input_size=75"]}


# MobileNetV3-Small (the demo's) in the default suite; the others in the slow one.
@pytest.mark.parametrize(
    "name",
    [
        n if n == "mobilenet_v3_small" else pytest.param(n, marks=pytest.mark.slow)
        for n in list_models()
    ],
)
def test_each_architecture_trains_end_to_end(name, compose_cfg, tiny_dataset):
    """The real app path (Hydra config -> run) with debug=fast for every registry entry."""
    extra = E2E_INPUT.get(name, ["model.input_size=32"])
    if name == "inception_v3":
        extra = [*extra, "model.net.aux_logits=false"]
    cfg = compose_cfg(
        [
            "dataset=image_folder",
            f"dataset.root={tiny_dataset}",
            *FAST_OVERRIDES,
            f"model={name}",
            "debug=fast",
            *extra,
        ]
    )
    record = run(cfg)
    assert record.model == name and record.data.num_classes == 3
    assert_scored_every_test_image(record, n_test=3 * 4)
    assert record.cost.params_trainable == record.cost.params_total


@pytest.mark.slow
def test_inception_trains_with_its_aux_head_at_299(compose_cfg, tiny_dataset):
    cfg = compose_cfg(
        [
            "dataset=image_folder",
            f"dataset.root={tiny_dataset}",
            *FAST_OVERRIDES,
            "model=inception_v3",
            "dataset.batch_size=4",
            "debug=fast",
        ]
    )
    record = run(cfg)
    assert record.data.input_size == 299
    # ImageNet's 1000-class fc (2048 in) and aux fc (768 in) replaced by 3-class ones.
    heads_1000, heads_3 = (2048 + 768) * 1000 + 2 * 1000, (2048 + 768) * 3 + 2 * 3
    assert record.cost.params_total == 27_161_264 - heads_1000 + heads_3
    assert_scored_every_test_image(record, n_test=3 * 4)


def test_pretrained_and_freeze_flow_from_the_config(compose_cfg, tiny_dataset, torch_home):
    """`model.net.pretrained=true model.freeze=last_layer` via Hydra: ImageNet weights, new
    head."""
    _cache_imagenet_file(torch_home)
    cfg = compose_cfg(
        [
            "dataset=image_folder",
            f"dataset.root={tiny_dataset}",
            *FAST_OVERRIDES,
            "model=mobilenet_v3_small",
            "model.input_size=32",
            "model.net.pretrained=true",
            "model.freeze=last_layer",
            "debug=fast",
        ]
    )
    record = run(cfg)
    assert record.cost.params_trainable == 1024 * 3 + 3  # only the new 3-class head
    assert record.cost.params_total == 2_542_856 - 1024 * 1000 - 1000 + 1024 * 3 + 3
