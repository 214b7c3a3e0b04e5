"""A Hugging Face pipeline as its users write it: a tokenizer, a Dataset of encodings, a
DataLoader with ``DataCollatorWithPadding`` (each batch padded to its own longest review),
``BertForSequenceClassification`` computing its own loss from the batch's ``labels``. Nothing is
downloaded: the tokenizer's vocabulary and the tiny BERT's config are built here.

The planted fault: the validation reviews were scraped a second time and 60 of the 200 are
reviews already in train. The checks read the batches as the collator pads them, identify a
review by all its input fields with the padding made equal, and name the copies.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from torch.utils.data import DataLoader, Dataset  # noqa: E402

from pytest_trainsanity import TrainSanityError, TrainSetup  # noqa: E402

POSITIVE = "great superb wonderful moving brilliant delightful charming".split()
NEGATIVE = "dull awful boring tedious clumsy dreadful bland".split()
FILLER = "the film plot acting cast story was and a with very quite its director score".split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(POSITIVE + NEGATIVE + FILLER))]


def reviews(n: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    """Short reviews with one sentiment word somewhere among filler words; label 1 = positive."""
    labels = rng.integers(0, 2, n)
    texts = []
    for label in labels:
        words = list(rng.choice(FILLER, rng.integers(4, 14)))
        words.insert(int(rng.integers(0, len(words))), str(rng.choice(POSITIVE if label else NEGATIVE)))
        texts.append(" ".join(words))
    return texts, labels


class Reviews(Dataset):
    def __init__(self, tokenizer, texts: list[str], labels: np.ndarray) -> None:
        self.encodings, self.labels = tokenizer(texts, truncation=True, max_length=32), labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.encodings["input_ids"][i], "attention_mask": self.encodings["attention_mask"][i],
                "labels": int(self.labels[i])}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    tokenizer = transformers.BertTokenizerFast(vocab={word: i for i, word in enumerate(VOCAB)})
    return tokenizer, reviews(800, rng), reviews(200, rng)


def bert_setup(tokenizer, train, val) -> TrainSetup:
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64, num_labels=2)
    model = transformers.BertForSequenceClassification(config)
    collate = transformers.DataCollatorWithPadding(tokenizer)
    return TrainSetup(
        model=model,
        train=DataLoader(Reviews(tokenizer, *train), batch_size=16, shuffle=True, collate_fn=collate),
        val=DataLoader(Reviews(tokenizer, *val), batch_size=32, collate_fn=collate),
        optimizer=torch.optim.AdamW(model.parameters(), lr=3e-3),
    )


@pytest.fixture
def train_setup(data):
    tokenizer, train, val = data
    return bert_setup(tokenizer, train, val)


@pytest.fixture
def rescraped_val(data):
    tokenizer, train, (texts, labels) = data
    return bert_setup(tokenizer, train, (texts[:140] + train[0][:60], np.concatenate([labels[:140], train[1][:60]])))


@pytest.mark.no_epoch1_overfit(epochs=2)
@pytest.mark.inputs_normalized  # token ids and the attention mask are not features to scale: named and skipped
@pytest.mark.no_leakage
def test_clean_reviews_are_sane(trainsanity_report):
    assert trainsanity_report["no_epoch1_overfit"].metrics["val_metric"] > 0.9


@pytest.mark.xfail(raises=TrainSanityError, strict=True, reason="60 val reviews are copies of train reviews")
@pytest.mark.no_leakage(setup="rescraped_val")
def test_rescraped_val_overlaps_train():
    pass
