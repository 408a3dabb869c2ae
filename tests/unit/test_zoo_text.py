"""The zoo's NLP and speech models (ipa_airflow/profiling/zoo_text.py): built from their published
configs without any network, a request's forward pass on a batch of 2, and the accuracies the IPA
paper's settings give for the same models."""

import json
import socket
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from ipa_airflow.profiling import zoo, zoo_text  # noqa: E402
from ipa_airflow.profiling.torch_runner import batch_runner, random_inputs  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
# shared/ lies in the checkout, or beside it (CI's clone)
PAPER_JSON = (
    next(
        (
            p
            for p in (REPO / "shared", REPO.parent / "shared")
            if (p / "data" / "ipa_paper_pipelines.json").is_file()
        ),
        REPO / "shared",
    )
    / "data"
    / "ipa_paper_pipelines.json"
)

# One per transformers class, the smallest: built with real (random) weights and run. The rest are
# built on the meta device (structure and parameter count, no memory, no time).
FORWARD = (
    "s2t-small",
    "wav2vec2-base",
    "roberta-base-squad2",
    "xlm-roberta-base-squad2",
    "xlm-roberta-base-langid",
    "distilbert-squad",
    "distilbert-sst2",
    "distilbart-xsum-1-1",
    "t5-small",
    "opus-mt-fr-en",
)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No network: the hub told to stay offline, and any connection attempt fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")

    def refuse(self, address):
        raise AssertionError(f"a zoo model tried to reach the network ({address})")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_forward_covers_every_family():
    assert {zoo_text.entry(n).family for n in FORWARD} == set(zoo_text.FAMILIES)


def _conv_frames(samples: int, kernels, strides) -> int:
    for k, s in zip(kernels, strides, strict=True):
        samples = (samples - k) // s + 1
    return samples


def _expected_shape(e: zoo_text.TextZooEntry, batch: int) -> tuple[int, ...]:
    if e.family in zoo_text.GENERATIVE:
        return (batch, 1 + e.new_tokens)  # the decoder's start token, then the new tokens
    if e.family == "wav2vec2-ctc":
        return (batch, _conv_frames(e.input.length, e.config["conv_kernel"], e.config["conv_stride"]))
    if e.task == "question-answering":
        return (batch, e.input.length, 2)
    return (batch, e.config["num_labels"])


@pytest.mark.parametrize("name", FORWARD)
def test_forward_pass_on_a_batch_of_two(name):
    model = zoo.build(name)
    e = zoo_text.entry(name)
    x = random_inputs(model.input_spec, 2, "cpu", torch.float32)
    with torch.inference_mode():
        out = model(x)
    assert tuple(out.shape) == _expected_shape(e, 2)
    if e.family in zoo_text.GENERATIVE:
        start = model.model.config.decoder_start_token_id
        assert (out[:, 0] == start).all()
        vocab = e.config.get("decoder_vocab_size", e.config["vocab_size"])
        assert int(out.min()) >= 0 and int(out.max()) < vocab
    else:
        assert torch.isfinite(out.float()).all()


@pytest.mark.parametrize("name", zoo_text.NAMES)
def test_every_entry_builds_with_its_published_shape(name):
    e = zoo_text.entry(name)
    with torch.device("meta"):
        model = zoo_text.hf_model(e)
    assert not model.training
    cfg = model.config
    for key, value in e.config.items():
        assert getattr(cfg, key) == (list(value) if isinstance(value, tuple) else value), key
    if e.published_params_m is not None:
        params_m = sum(p.numel() for p in model.parameters()) / 1e6
        assert params_m == pytest.approx(e.published_params_m, rel=0.02)


@pytest.mark.parametrize("name", zoo_text.NAMES)
def test_zoo_model_describes_the_entry(name):
    zm = zoo.zoo_model(name)
    e = zoo_text.entry(name)
    assert (zm.task, zm.accuracy, zm.metric) == (e.task, e.accuracy, e.metric)
    assert e.source in zm.weights and zm.accuracy_source == e.accuracy_source
    assert zm.input_size == e.input.length and zm.input_desc == e.input_desc
    assert 0 < zm.accuracy <= 100
    if e.family in zoo_text.GENERATIVE:
        assert e.new_tokens > 0 and f"{e.new_tokens} new tokens" in zm.input_desc
    else:
        assert e.new_tokens == 0
    if e.input.kind == zoo_text.TOKENS:
        vocab = e.config["vocab_size"]
        assert 0 < e.input.low < e.input.high <= vocab - 1  # no padding or end ids among the inputs
        assert e.input.length <= e.config.get("max_position_embeddings", e.input.length)


def test_names_are_unique_cli_friendly_and_apart_from_torchvisions():
    names = zoo.names()
    assert len(names) == len(set(names))
    assert set(zoo_text.NAMES).isdisjoint(zoo.CLASSIFICATION + zoo.DETECTION)
    for n in zoo_text.NAMES:
        assert n == n.lower() and " " not in n and "/" not in n and len(n) <= 28


def _paper_variants() -> dict[str, tuple[float, str]]:
    if not PAPER_JSON.is_file():
        pytest.skip(f"{PAPER_JSON} (the project's shared data) is not here")
    settings = json.loads(PAPER_JSON.read_text())
    return {
        v["model"]: (v["accuracy_pct"], stage["accuracy_metric"])
        for pipeline in settings["pipelines"].values()
        for stage in pipeline["stages"]
        for v in stage["variants"]
    }


def test_accuracies_agree_with_the_papers_settings():
    paper = _paper_variants()
    matched = 0
    for e in zoo_text.ENTRIES:
        key = e.source.replace("/", "-")  # the settings name a model by its hub id, '/' as '-'
        if key in paper:
            matched += 1
            assert e.accuracy == pytest.approx(paper[key][0], abs=1e-4), e.name
            assert e.accuracy_source == zoo_text.PAPER, e.name
        else:
            assert e.accuracy_source != zoo_text.PAPER, f"{e.name} cites the paper, which has no {key}"
    assert matched >= 15


def test_the_papers_nlp_and_speech_models_are_in_the_zoo_or_said_to_be_left_out():
    paper = _paper_variants()
    in_zoo = {e.source.replace("/", "-") for e in zoo_text.ENTRIES}
    vision = {"yolov5n", "yolov5s", "yolov5m", "yolov5l", "yolov5x"} | set(zoo.CLASSIFICATION)
    missing = set(paper) - in_zoo - vision
    assert missing == set(zoo_text.PAPER_MODELS_LEFT_OUT)


def test_metrics_say_which_benchmark():
    asr = [e for e in zoo_text.ENTRIES if e.task == "speech-recognition"]
    assert {e.metric for e in asr} == {"asr_100_minus_wer"}
    squad2 = {e.name for e in zoo_text.ENTRIES if e.metric == "squad2_f1"}
    assert "distilbert-squad" not in squad2  # its published F1 is SQuAD v1.1's


def test_unknown_name_lists_the_choices():
    with pytest.raises(KeyError) as info:
        zoo.zoo_model("bert-huge")
    message = str(info.value)
    assert "'bert-huge' is not in the zoo" in message
    for n in ("resnet18", "s2t-small", "opus-mt-fr-en", "xlm-roberta-base-langid"):
        assert n in message
    with pytest.raises(KeyError) as built:
        zoo.build("bert-huge")
    assert str(built.value) == message


def test_batch_runner_times_a_request_and_keeps_the_image_path():
    model = zoo.build("distilbert-sst2")
    run = batch_runner(model, "text-classification", 64, 2, "cpu", "fp32")
    run()  # one request's work, through the profiler's runner
    x = random_inputs(model.input_spec, 3, "cpu", torch.float32)
    assert x.dtype == torch.long and tuple(x.shape) == (3, 64)
    assert torch.equal(x, random_inputs(model.input_spec, 3, "cpu", torch.float32))  # seeded
    speech = random_inputs(zoo_text.entry("s2t-small").input, 2, "cpu", torch.float32)
    assert tuple(speech.shape) == (2, 400, 80) and speech.dtype == torch.float32
    wave = random_inputs(zoo_text.entry("wav2vec2-base").input, 2, "cpu", torch.bfloat16)
    assert tuple(wave.shape) == (2, 64000) and wave.dtype == torch.bfloat16

    seen = []

    class Image(torch.nn.Module):
        def forward(self, x):
            seen.append(x)
            return x

    batch_runner(Image(), "classification", 32, 2, "cpu", "fp32")()
    batch_runner(Image(), "detection", 32, 2, "cpu", "fp32")()
    assert tuple(seen[0].shape) == (2, 3, 32, 32)
    assert isinstance(seen[1], list) and [tuple(t.shape) for t in seen[1]] == [(3, 32, 32)] * 2
