"""Model-space images to pixels and PNG grids."""

import numpy as np
import torch
from PIL import Image

from ddpm.utils.images import grid_image, save_image_grid, to_uint8


def test_to_uint8_rounds_like_the_official_code():
    x = torch.tensor([-1.0, -0.99, 0.0, 0.5, 1.0, 1.7, -3.0])
    expected = np.clip(np.round((x.numpy() + 1) * 127.5), 0, 255).astype(np.uint8)
    assert to_uint8(x).numpy().tolist() == expected.tolist()


def test_grid_is_enlarged_by_whole_pixels_and_exact_without(tmp_path):
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    exact = np.array(Image.open(save_image_grid(x, tmp_path / "exact.png", min_cell=0)))
    big = np.array(Image.open(save_image_grid(x, tmp_path / "big.png", min_cell=64)))
    assert big.shape[:2] == (exact.shape[0] * 8, exact.shape[1] * 8)  # make_grid gives RGB
    np.testing.assert_array_equal(big[::8, ::8], exact)
    # the first image sits after a 2-pixel border
    np.testing.assert_array_equal(exact[2:10, 2:10, 0], to_uint8(x[0, 0]).numpy())
    assert not list(tmp_path.glob("*.tmp.png"))


def test_row_labels_are_written_in_a_margin_left_of_their_rows():
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    plain = np.array(grid_image(x, nrow=3))
    labelled = np.array(grid_image(x, nrow=3, row_labels=["0", "1"]))
    margin = labelled.shape[1] - plain.shape[1]
    assert labelled.shape[0] == plain.shape[0] and margin > 0
    np.testing.assert_array_equal(labelled[:, margin:], plain)  # the grid itself is unchanged
    ink = np.nonzero(labelled[:, :margin].min(axis=(1, 2)) < 128)[0]  # rows of pixels with dark text
    row = 8 * 8 + 2 * 8  # an enlarged cell and its border
    assert ink.size and {int(y) // row for y in ink} == {0, 1}  # text beside each of the two rows
    assert not np.array_equal(labelled[:row, :margin], labelled[row : 2 * row, :margin])  # "0" is not "1"
