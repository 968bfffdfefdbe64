"""The one table of published numbers, keyed by dataset family and by the metric names ``ddpm-eval`` reports.

* :data:`PAPER`: Ho et al. (2020), Table 1 (CIFAR-10 FID 3.17 vs the training set, IS 9.46, NLL
  <= 3.75 bits/dim on the test set) and Sec. 4 (LSUN Church FID 7.89, Bedroom 4.90, the latter from a
  larger model than the released 114M one). ``fid_50k_test`` is the released CIFAR-10 weights' FID
  against the test set (the paper reports the training-set number only).
* :data:`TABLE2`: the IS / FID of each cell of Table 2 (parameterisation x objective).
* :data:`INCEPTION_CHECK`: real-data figures of the TF-compatible Inception on CIFAR-10 (torch-fidelity's
  and the TF code's values); a setup that misses them does not reproduce any FID/IS.
"""

from __future__ import annotations

PAPER: dict[str, dict[str, float]] = {
    "cifar10": {
        "fid_50k_train": 3.17,
        "fid_50k_test": 5.27,
        "is_50k_10splits": 9.46,
        "is_50k_1split": 9.46,
        "nll_bpd_test": 3.75,
    },
    "lsun_church": {"fid_50k_train": 7.89},
    "lsun_bedroom": {"fid_50k_train": 4.90},
}

# Ho et al. (2020), Table 2 (CIFAR-10, unconditional): IS (mean, std over 10 splits) and FID of each cell;
# the cells without numbers were unstable to train. Keys are the experiment configs of the cells.
TABLE2: dict[str, dict[str, float]] = {
    "table2_mu_vlb_learned": {"is": 7.28, "is_std": 0.10, "fid": 23.69},
    "table2_mu_vlb_fixed": {"is": 8.06, "is_std": 0.09, "fid": 13.22},
    "table2_mu_mse": {},
    "table2_eps_vlb_learned": {},
    "table2_eps_vlb_fixed": {"is": 7.67, "is_std": 0.13, "fid": 13.51},
    "table2_eps_simple": {"is": 9.46, "is_std": 0.11, "fid": 3.17},
}

INCEPTION_CHECK: dict[str, dict[str, float]] = {
    "cifar10": {
        "is_train_10splits": 11.2368,
        "is_test_10splits": 10.98,
        "fid_train_vs_test": 3.1508,
    },
}
CHECK_TOLERANCE: dict[str, float] = {
    "is_train_10splits": 0.02,
    "is_test_10splits": 0.25,
    "fid_train_vs_test": 0.05,
}


# The paper's reverse variance per dataset: sigma_t^2 = beta_t for CIFAR-10, the posterior's beta~_t for LSUN
PAPER_VAR_TYPE: dict[str, str] = {
    "cifar10": "fixed_large",
    "lsun_church": "fixed_small",
    "lsun_bedroom": "fixed_small",
    "lsun_cat": "fixed_small",
}
PAPER_NUM_SAMPLES = 50_000


def dataset_family(name: str | None) -> str | None:
    """``cifar10`` / ``lsun_church`` / ... from a dataset name (``cifar10``, ``lsun-church_outdoor-256``)."""
    lowered = (name or "").lower()
    if "cifar10" in lowered:
        return "cifar10"
    for category, family in (("church", "lsun_church"), ("bedroom", "lsun_bedroom"), ("cat", "lsun_cat")):
        if "lsun" in lowered and category in lowered:
            return family
    return None


def paper_numbers(family: str | None) -> dict[str, float]:
    """The published numbers of a dataset family (empty when there are none)."""
    return dict(PAPER.get(family or "", {}))


__all__ = [
    "CHECK_TOLERANCE",
    "INCEPTION_CHECK",
    "PAPER",
    "PAPER_NUM_SAMPLES",
    "PAPER_VAR_TYPE",
    "TABLE2",
    "dataset_family",
    "paper_numbers",
]
