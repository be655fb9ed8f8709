"""Padding-free packing and target-only logits give the padded batch's loss and gradients (tiny model, fp32)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_items(tiny_bundle):
    from transformers import AutoTokenizer

    from rationalizer.dataset import Example
    from rationalizer.training.items import build_items, template_for

    tok = AutoTokenizer.from_pretrained(tiny_bundle / "hf")
    rows = [
        Example("a", "Can a penguin fly?", "no", ["yes", "no"], rationale="Penguins are birds that swim."),
        Example("b", "Is the sun a star?", "yes", rationale="The sun is a star at the centre of our system."),
        Example("c", "Where is milk kept cold?", "fridge", ["fridge", "oven", "shelf"],
                rationale="Milk spoils when warm, so it is kept in a fridge."),
        Example("a", "Can a penguin fly?", "yes", ["yes", "no"], rationale="Penguins fly over the sea.",
                kind="counterfactual"),
        Example("d", "Is the sun a star?", "no", rationale="The sun is a planet.", kind="counterfactual"),
    ]
    items, stats = build_items(rows, tok, template_for(tok, objective="multitask"), "multitask")
    assert stats.tasks == {"factual": 3, "answer_task": 3, "counterfactual": 2}
    assert len({it.weight for it in items}) == 2  # counterfactual rows weigh more than the others
    return items, tok


def _model(tiny_bundle):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_bundle / "hf", dtype=torch.float32)


def test_packed_loss_and_gradients_equal_the_padded_batch(tiny_bundle, tiny_items):
    from rationalizer.training.batches import collate, weighted_loss
    from rationalizer.training.packing import pack, packed_loss, target_logits

    items, tok = tiny_items
    model = _model(tiny_bundle)
    batch = collate(items, tok.pad_token_id)
    padded_out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    padded, padded_tokens = weighted_loss(padded_out.logits, batch["labels"], batch["weights"])
    padded.backward()
    padded_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    packed_batch = pack(items)
    assert packed_batch.input_ids.shape[1] == sum(len(it.input_ids) for it in items)  # no padding at all
    packed, packed_tokens = packed_loss(target_logits(model, packed_batch), packed_batch)
    packed.backward()
    assert packed_tokens == padded_tokens
    assert float(packed) == pytest.approx(float(padded), rel=1e-5)
    for p, g in zip(model.parameters(), padded_grads):
        assert torch.allclose(p.grad, g, atol=1e-6, rtol=1e-4)


def test_no_token_attends_across_a_sequence_boundary(tiny_bundle, tiny_items):
    """Changing the first sequence must not change the logits of the second one in the packed row."""
    from rationalizer.training.items import TrainItem
    from rationalizer.training.packing import pack, target_logits

    items, _ = tiny_items
    model = _model(tiny_bundle)
    first, second = items[0], items[1]
    other = TrainItem([t + 1 if t > 10 else t for t in first.input_ids], first.labels, first.weight, first.task)
    with torch.no_grad():
        a, b = (target_logits(model, pack([x, second])) for x in (first, other))
        alone = target_logits(model, pack([second]))
    n_second = alone.shape[0]
    assert torch.allclose(a[-n_second:], b[-n_second:], atol=1e-5)
    assert torch.allclose(a[-n_second:], alone, atol=1e-5)
    assert not torch.allclose(a[:-n_second], b[:-n_second], atol=1e-3), "the probe must be able to fail"


def test_cached_topk_reference_kl_equals_the_exact_kl_with_the_whole_vocabulary(tiny_bundle, tiny_items):
    from rationalizer.training.packing import pack, target_logits
    from rationalizer.training.reference import compute_reference, topk_kl

    items, _ = tiny_items
    reference = _model(tiny_bundle)
    torch.manual_seed(1)
    policy = _model(tiny_bundle)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = pack(items)
    logp = torch.log_softmax(target_logits(policy, batch).float(), -1)
    with torch.no_grad():
        ref_logp = torch.log_softmax(target_logits(reference, batch).float(), -1)
    exact = (logp.exp() * (logp - ref_logp)).sum(-1)
    vocab = logp.shape[-1]
    whole = compute_reference(reference, items, k=vocab, batch_size=3, device="cpu")
    assert torch.allclose(topk_kl(logp, *whole.batch(range(len(items)), "cpu")), exact, atol=1e-5)
    few = compute_reference(reference, items, k=16, batch_size=2, device="cpu")
    approx = topk_kl(logp, *few.batch(range(len(items)), "cpu"))
    assert (approx <= exact + 1e-5).all() and (approx >= -1e-6).all()  # the coarsened KL is a lower bound
    assert float(approx.mean()) > 0.05 * float(exact.mean())
    approx.sum().backward()  # the term trains the policy
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters())
