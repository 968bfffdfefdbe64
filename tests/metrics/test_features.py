"""The one feature loop: chunks of a batch in order, and the sums and features it accumulates."""

import torch

from ddpm.metrics.features import accumulate, feature_chunks
from ddpm.metrics.statistics import statistics_for

from .helpers import RandomImages, StubExtractor


def test_chunks_cover_every_image_in_order():
    extractor, images = StubExtractor(), RandomImages(10).images
    batches = [(torch.arange(0, 7), images[:7]), (torch.arange(7, 10), images[7:])]
    chunks = list(feature_chunks(extractor, batches, 3, "cpu"))
    assert [indices.tolist() for indices, _, _ in chunks] == [[0, 1, 2], [3, 4, 5], [6], [7, 8, 9]]
    assert extractor.calls == 4
    features, logits = extractor(images)
    torch.testing.assert_close(torch.cat([f for _, f, _ in chunks]), features, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.cat([g for _, _, g in chunks]), logits, rtol=1e-5, atol=1e-6)


def test_accumulate_sums_every_image_and_keeps_features_in_index_order():
    extractor, images = StubExtractor(), RandomImages(9).images
    order = torch.tensor([4, 0, 8, 2, 6, 1, 5, 3, 7])  # batches arrive in any order, as ranks deliver them
    batches = [(order[:5], images[order[:5]]), (order[5:], images[order[5:]])]
    stats = statistics_for(extractor, 9, (3, 1), 2020)
    kept = accumulate(stats, extractor, batches, batch_size=2, keep_features=True)
    stats.check_complete()
    torch.testing.assert_close(kept, extractor(images)[0], rtol=1e-5, atol=1e-6)
    plain = statistics_for(extractor, 9, (3, 1), 2020)
    assert accumulate(plain, extractor, batches, batch_size=4) is None
    torch.testing.assert_close(plain.features.total, stats.features.total, rtol=1e-6, atol=1e-6)
