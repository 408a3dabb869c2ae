"""The zoo's NLP and speech models: the IPA paper's speech recognition, question answering, sentiment,
summarisation, language identification and translation architectures, built by `transformers` from the
published configurations written out below (random weights, nothing downloaded).

Each entry says which published model its numbers are (`source`, a Hugging Face model id), the input
one request carries (`InputSpec`), and the accuracy published for it. Where the model is one of the IPA
paper's (shared data ipa_paper_pipelines.json, from the authors' accuracies.yaml), that value and metric
are used, so zoo profiles and the paper's profiles agree.

What is timed is what a server does for one request: encoders and classifiers one forward pass;
generative models (S2T, BART, T5, Marian) `generate` with greedy search of exactly `new_tokens` new
tokens (the encoder once, then one decoder step per token with the key/value cache), since a fixed
length is what makes latencies comparable across variants and random weights would otherwise stop at
whatever step first emits end-of-sequence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

# The paper's settings (shared data): accuracy_pct and accuracy_metric there.
PAPER = "ipa_paper_pipelines.json (the IPA authors' accuracies.yaml)"

# Input kinds a request carries; torch_runner.random_inputs makes a batch of each.
TOKENS = "tokens"  # token ids, (batch, length)
FBANK = "fbank"  # log-mel filterbank frames, (batch, length, features): 10 ms hop, so 100 frames a second
WAVEFORM = "waveform"  # 16 kHz samples, (batch, length)


@dataclass(frozen=True)
class InputSpec:
    kind: str  # tokens | fbank | waveform
    length: int  # tokens, frames or samples
    features: int = 0  # fbank: mel bins per frame
    # tokens: ids drawn from [low, high), clear of the padding, start and end ids every config here
    # keeps at the ends of its vocabulary, so no input looks padded
    low: int = 0
    high: int = 0

    def describe(self) -> str:
        if self.kind == TOKENS:
            return f"{self.length} random token ids"
        if self.kind == FBANK:
            return (
                f"{self.length / 100:g} s of speech as {self.length} random {self.features}-bin fbank frames"
            )
        return f"{self.length / 16000:g} s of random 16 kHz waveform ({self.length} samples)"


@dataclass(frozen=True)
class TextZooEntry:
    name: str
    task: str
    source: str  # the Hugging Face model whose published config.json the numbers in `config` are
    family: str  # which transformers class builds it (FAMILIES)
    config: dict[str, Any]  # the published configuration's shape-setting fields
    input: InputSpec
    accuracy: float  # percent
    metric: str
    accuracy_source: str
    new_tokens: int = 0  # generative: greedy decode of exactly this many tokens per request
    published_params_m: float | None = None  # parameter count the source publishes, millions
    notes: str = field(default="")

    @property
    def input_desc(self) -> str:
        desc = self.input.describe()
        if self.new_tokens:
            return f"{desc}; greedy decode of {self.new_tokens} new tokens"
        return desc


# family -> (transformers config class, model class, what one request returns)
FAMILIES: dict[str, tuple[str, str]] = {
    "s2t": ("Speech2TextConfig", "Speech2TextForConditionalGeneration"),
    "wav2vec2-ctc": ("Wav2Vec2Config", "Wav2Vec2ForCTC"),
    "roberta-qa": ("RobertaConfig", "RobertaForQuestionAnswering"),
    "xlm-roberta-qa": ("XLMRobertaConfig", "XLMRobertaForQuestionAnswering"),
    "xlm-roberta-cls": ("XLMRobertaConfig", "XLMRobertaForSequenceClassification"),
    "distilbert-qa": ("DistilBertConfig", "DistilBertForQuestionAnswering"),
    "distilbert-cls": ("DistilBertConfig", "DistilBertForSequenceClassification"),
    "bart": ("BartConfig", "BartForConditionalGeneration"),
    "t5": ("T5Config", "T5ForConditionalGeneration"),
    "marian": ("MarianConfig", "MarianMTModel"),
}
GENERATIVE = ("s2t", "bart", "t5", "marian")

# ---- published configurations -----------------------------------------------------------------------
# Speech-to-Text (fairseq S2T, LibriSpeech): 12 encoder / 6 decoder layers behind two strided convs over
# 80-bin fbank; a 10k unigram vocabulary. Small, medium and large differ in width only.
_S2T_COMMON = dict(
    vocab_size=10000,
    encoder_layers=12,
    decoder_layers=6,
    conv_channels=1024,
    conv_kernel_sizes=[5, 5],
    num_conv_layers=2,
    input_feat_per_channel=80,
    input_channels=1,
    max_source_positions=6000,
    max_target_positions=1024,
    activation_function="relu",
    scale_embedding=True,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
    decoder_start_token_id=2,
)


def _s2t(width: int, heads: int, ffn: int) -> dict[str, Any]:
    return {
        **_S2T_COMMON,
        "d_model": width,
        "encoder_attention_heads": heads,
        "decoder_attention_heads": heads,
        "encoder_ffn_dim": ffn,
        "decoder_ffn_dim": ffn,
    }


# wav2vec 2.0 fine-tuned with CTC on LibriSpeech 960 h: the 7-layer conv feature encoder (group norm,
# no conv bias), then the transformer; 32 output characters.
_W2V_COMMON = dict(
    vocab_size=32,
    conv_dim=[512] * 7,
    conv_kernel=[10, 3, 3, 3, 3, 2, 2],
    conv_stride=[5, 2, 2, 2, 2, 2, 2],
    conv_bias=False,
    feat_extract_norm="group",
    do_stable_layer_norm=False,
    num_conv_pos_embeddings=128,
    num_conv_pos_embedding_groups=16,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)


def _w2v(width: int, layers: int, heads: int, ffn: int) -> dict[str, Any]:
    return {
        **_W2V_COMMON,
        "hidden_size": width,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
    }


def _roberta(vocab: int, width: int, layers: int, heads: int, ffn: int, **extra: Any) -> dict[str, Any]:
    """RoBERTa and XLM-R: 514 positions (two offset by the padding id), one token type."""
    return dict(
        vocab_size=vocab,
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        max_position_embeddings=514,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        **extra,
    )


def _distilbert(vocab: int, **extra: Any) -> dict[str, Any]:
    return dict(
        vocab_size=vocab,
        dim=768,
        n_layers=6,
        n_heads=12,
        hidden_dim=3072,
        max_position_embeddings=512,
        **extra,
    )


def _distilbart(encoder_layers: int, decoder_layers: int) -> dict[str, Any]:
    """sshleifer's distilbart: bart-large's width with fewer layers (the name says encoder-decoder)."""
    return dict(
        vocab_size=50264,
        d_model=1024,
        encoder_layers=encoder_layers,
        decoder_layers=decoder_layers,
        encoder_attention_heads=16,
        decoder_attention_heads=16,
        encoder_ffn_dim=4096,
        decoder_ffn_dim=4096,
        max_position_embeddings=1024,
        activation_function="gelu",
        scale_embedding=False,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
    )


def _t5(width: int, ffn: int, layers: int, heads: int) -> dict[str, Any]:
    return dict(
        vocab_size=32128,
        d_model=width,
        d_kv=64,
        d_ff=ffn,
        num_layers=layers,
        num_decoder_layers=layers,
        num_heads=heads,
        relative_attention_num_buckets=32,
        feed_forward_proj="relu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )


def _marian(vocab: int, width: int, heads: int, ffn: int, positions: int, activation: str) -> dict[str, Any]:
    """OPUS-MT (Marian): 6 + 6 layers, sinusoidal positions, shared source/target vocabulary whose last
    id is the padding id the decoder starts from."""
    return dict(
        vocab_size=vocab,
        decoder_vocab_size=vocab,
        d_model=width,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn,
        max_position_embeddings=positions,
        activation_function=activation,
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
        pad_token_id=vocab - 1,
        decoder_start_token_id=vocab - 1,
    )


# ---- inputs -----------------------------------------------------------------------------------------
# One request: 4 s of speech (an utterance of the paper's audio pipelines); a question with a context
# passage for QA; a sentence for classification and language identification; a news-article excerpt to
# summarise; a sentence to translate, its translation about as long.
SPEECH_S = 4
_FBANK = InputSpec(FBANK, SPEECH_S * 100, features=80)
_WAVE = InputSpec(WAVEFORM, SPEECH_S * 16000)
ASR_TOKENS = 16  # about ten words said in 4 s, in 10k-unigram pieces
QA_TOKENS, SENTENCE_TOKENS, ARTICLE_TOKENS, SUMMARY_TOKENS, TRANSLATION_TOKENS = 256, 64, 256, 32, 32


def _tokens(length: int, vocab: int) -> InputSpec:
    # 5: past every config's low special ids; vocab - 1: Marian's padding id is its last
    return InputSpec(TOKENS, length, low=5, high=vocab - 1)


_ASR_METRIC = "asr_100_minus_wer"
_SQUAD2 = "squad2_f1"
_XSUM = "xsum_rougeL"
_CNN = "cnn_dailymail_rougeL"
_DISTILBART_TABLE = "sshleifer/distilbart model card metrics table"

ENTRIES: tuple[TextZooEntry, ...] = (
    # -- speech recognition (audio-qa, audio-sent pipelines' first stage)
    TextZooEntry(
        "s2t-small",
        "speech-recognition",
        "facebook/s2t-small-librispeech-asr",
        "s2t",
        _s2t(256, 4, 2048),
        _FBANK,
        58.72,
        _ASR_METRIC,
        PAPER,
        new_tokens=ASR_TOKENS,
        published_params_m=30,  # fairseq S2T s2t_transformer_s
    ),
    TextZooEntry(
        "s2t-medium",
        "speech-recognition",
        "facebook/s2t-medium-librispeech-asr",
        "s2t",
        _s2t(512, 8, 2048),
        _FBANK,
        64.88,
        _ASR_METRIC,
        PAPER,
        new_tokens=ASR_TOKENS,
        published_params_m=71,  # s2t_transformer_m
    ),
    TextZooEntry(
        "s2t-large",
        "speech-recognition",
        "facebook/s2t-large-librispeech-asr",
        "s2t",
        _s2t(1024, 16, 4096),
        _FBANK,
        66.74,
        _ASR_METRIC,
        PAPER,
        new_tokens=ASR_TOKENS,
        published_params_m=268,  # s2t_transformer_l
    ),
    TextZooEntry(
        "wav2vec2-base",
        "speech-recognition",
        "facebook/wav2vec2-base-960h",
        "wav2vec2-ctc",
        _w2v(768, 12, 12, 3072),
        _WAVE,
        96.6,
        _ASR_METRIC,
        "model card: 3.4 WER on LibriSpeech test-clean, no language model (not in the paper's "
        "accuracies.yaml, whose WER test set differs: do not rank it against s2t-*)",
        published_params_m=94.4,  # OpenVINO model zoo's wav2vec2-base: 94.3965 M
        notes="CTC: one forward pass, greedy (argmax) decode",
    ),
    TextZooEntry(
        "wav2vec2-large",
        "speech-recognition",
        "facebook/wav2vec2-large-960h",
        "wav2vec2-ctc",
        _w2v(1024, 24, 16, 4096),
        _WAVE,
        97.2,
        _ASR_METRIC,
        "model card: 2.8 WER on LibriSpeech test-clean, no language model (not in the paper's "
        "accuracies.yaml, whose WER test set differs: do not rank it against s2t-*)",
        notes="CTC: one forward pass, greedy (argmax) decode",
    ),
    # -- question answering (audio-qa, sum-qa)
    TextZooEntry(
        "roberta-base-squad2",
        "question-answering",
        "deepset/roberta-base-squad2",
        "roberta-qa",
        _roberta(50265, 768, 12, 12, 3072),
        _tokens(QA_TOKENS, 50265),
        82.9125,
        _SQUAD2,
        PAPER,
    ),
    TextZooEntry(
        "xlm-roberta-base-squad2",
        "question-answering",
        "deepset/xlm-roberta-base-squad2",
        "xlm-roberta-qa",
        _roberta(250002, 768, 12, 12, 3072),
        _tokens(QA_TOKENS, 250002),
        77.141,
        _SQUAD2,
        PAPER,
    ),
    TextZooEntry(
        "xlm-roberta-large-squad2",
        "question-answering",
        "deepset/xlm-roberta-large-squad2",
        "xlm-roberta-qa",
        _roberta(250002, 1024, 24, 16, 4096),
        _tokens(QA_TOKENS, 250002),
        83.79,
        _SQUAD2,
        "deepset model card, SQuAD 2.0 dev (profiled in the paper, not in its accuracies.yaml)",
    ),
    TextZooEntry(
        "distilbert-squad",
        "question-answering",
        "distilbert-base-cased-distilled-squad",
        "distilbert-qa",
        _distilbert(28996),
        _tokens(QA_TOKENS, 28996),
        87.1,
        "squad1_f1",
        "model card, SQuAD v1.1 dev (profiled in the paper, not in its accuracies.yaml; v1.1, so not "
        "comparable with the SQuAD 2.0 F1 of the others)",
    ),
    # -- sentiment (audio-sent)
    TextZooEntry(
        "distilbert-sst2",
        "text-classification",
        "distilbert-base-uncased-finetuned-sst-2-english",
        "distilbert-cls",
        _distilbert(30522, num_labels=2),
        _tokens(SENTENCE_TOKENS, 30522),
        91.1,
        "sst2_accuracy",
        PAPER,
        published_params_m=67.0,
    ),
    # -- summarisation (sum-qa, nlp): distilbart, the paper's XSum variants and two CNN/DM ones
    *(
        TextZooEntry(
            f"distilbart-xsum-{e}-{d}",
            "summarization",
            f"sshleifer/distilbart-xsum-{e}-{d}",
            "bart",
            _distilbart(e, d),
            _tokens(ARTICLE_TOKENS, 50264),
            acc,
            _XSUM,
            PAPER,
            new_tokens=SUMMARY_TOKENS,
            published_params_m=params,
        )
        for e, d, acc, params in (
            (1, 1, 32.26, None),
            (12, 1, 33.37, 222),
            (6, 6, 35.73, 230),
            (12, 3, 36.39, 255),
            (9, 6, 36.61, 268),
            (12, 6, 36.99, 306),
        )
    ),
    *(
        TextZooEntry(
            f"distilbart-cnn-{e}-{d}",
            "summarization",
            f"sshleifer/distilbart-cnn-{e}-{d}",
            "bart",
            _distilbart(e, d),
            _tokens(ARTICLE_TOKENS, 50264),
            acc,
            _CNN,
            f"{_DISTILBART_TABLE} (profiled in the paper, not in its accuracies.yaml)",
            new_tokens=SUMMARY_TOKENS,
            published_params_m=params,
        )
        for e, d, acc, params in ((12, 6, 30.59, 306), (6, 6, 29.70, 230))
    ),
    TextZooEntry(
        "t5-small",
        "summarization",
        "google-t5/t5-small",
        "t5",
        _t5(512, 2048, 6, 8),
        _tokens(ARTICLE_TOKENS, 32128),
        38.35,
        _CNN,
        "Raffel et al. 2020 (JMLR), Table 14",
        new_tokens=SUMMARY_TOKENS,
        published_params_m=60.5,
    ),
    TextZooEntry(
        "t5-base",
        "summarization",
        "google-t5/t5-base",
        "t5",
        _t5(768, 3072, 12, 12),
        _tokens(ARTICLE_TOKENS, 32128),
        39.40,
        _CNN,
        "Raffel et al. 2020 (JMLR), Table 14",
        new_tokens=SUMMARY_TOKENS,
        published_params_m=223,
    ),
    # -- language identification (nlp)
    TextZooEntry(
        "xlm-roberta-base-langid",
        "language-identification",
        "dinalzein/xlm-roberta-base-finetuned-language-identification",
        "xlm-roberta-cls",
        _roberta(250002, 768, 12, 12, 3072, num_labels=20),
        _tokens(SENTENCE_TOKENS, 250002),
        99.59,
        "langid_accuracy",
        PAPER,
    ),
    # -- translation (nlp)
    TextZooEntry(
        "opus-mt-fr-en",
        "translation",
        "Helsinki-NLP/opus-mt-fr-en",
        "marian",
        _marian(59514, 512, 8, 2048, 512, "swish"),
        _tokens(TRANSLATION_TOKENS, 59514),
        33.1,
        "bleu_newsdiscussdev2015",
        PAPER,
        new_tokens=TRANSLATION_TOKENS,
    ),
    TextZooEntry(
        "opus-mt-tc-big-fr-en",
        "translation",
        "Helsinki-NLP/opus-mt-tc-big-fr-en",
        "marian",
        _marian(53017, 1024, 16, 4096, 1024, "relu"),
        _tokens(TRANSLATION_TOKENS, 53017),
        34.4,
        "bleu_newsdiscussdev2015",
        PAPER,
        new_tokens=TRANSLATION_TOKENS,
    ),
)
NAMES: tuple[str, ...] = tuple(e.name for e in ENTRIES)

# The paper's NLP and speech variants (ipa_paper_pipelines.json) with no entry, and why.
PAPER_MODELS_LEFT_OUT: dict[str, str] = {
    m: "sentiment fine-tune whose config (labels, vocabulary) we could not check against a published one"
    for m in (
        "Souvikcmsa-SentimentAnalysisDistillBERT",
        "Souvikcmsa-BERT_sentiment_analysis",
        "Souvikcmsa-Roberta_Sentiment_Analysis",
    )
}
_BY_NAME = {e.name: e for e in ENTRIES}


def entry(name: str) -> TextZooEntry:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(
            f"'{name}' is not an NLP or speech zoo model; choose one of {', '.join(NAMES)}"
        ) from None


# ---- building ---------------------------------------------------------------------------------------
def hf_model(e: TextZooEntry):
    """The bare transformers model of an entry, random weights, in eval mode. Built on whatever device
    is current (`with torch.device('meta')` builds the structure without allocating it)."""
    import transformers

    config_name, model_name = FAMILIES[e.family]
    return getattr(transformers, model_name)(getattr(transformers, config_name)(**e.config)).eval()


class ZooTextModule(torch.nn.Module):
    """One request's work on a batch of inputs (see the module docstring); `input_spec` says what
    torch_runner.random_inputs must make for it."""

    def __init__(self, e: TextZooEntry):
        super().__init__()
        self.entry = e
        self.input_spec = e.input
        self.model = hf_model(e)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        e, model = self.entry, self.model
        # No request is padded (each batch is one length), so every position is attended to.
        mask = torch.ones(inputs.shape[:2], dtype=torch.long, device=inputs.device)
        if e.family in GENERATIVE:
            return self._generate(inputs, mask)
        if e.family == "wav2vec2-ctc":
            return model(input_values=inputs).logits.argmax(-1)  # (batch, frames): greedy CTC
        out = model(input_ids=inputs, attention_mask=mask)
        if e.task == "question-answering":
            return torch.stack([out.start_logits, out.end_logits], dim=-1)  # (batch, tokens, 2)
        return out.logits  # (batch, labels)

    def _generate(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        from transformers import GenerationConfig

        cfg = self.model.config
        n = self.entry.new_tokens
        generation = GenerationConfig(
            max_new_tokens=n,
            min_new_tokens=n,  # end-of-sequence is suppressed until n tokens, so every call decodes n
            do_sample=False,
            num_beams=1,
            decoder_start_token_id=cfg.decoder_start_token_id,
            pad_token_id=cfg.pad_token_id,
            eos_token_id=cfg.eos_token_id,
        )
        source = "input_features" if self.entry.family == "s2t" else "input_ids"
        out = self.model.generate(**{source: inputs}, attention_mask=mask, generation_config=generation)
        return out  # (batch, 1 + n): the decoder's start token, then n new tokens


def build(name: str) -> ZooTextModule:
    return ZooTextModule(entry(name)).eval()
