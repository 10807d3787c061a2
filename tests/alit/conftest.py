"""Checks shared by the ALIT tests over the two official oracles (VQGAN base: ``reference.alit_ref``,
VAE base: ``reference.alit_vae_ref``; both expose ``official_decode_codes(sd, cfg, codes)``)."""

import torch


def assert_decode_ids_match_official(model, oracle, sd, cfg, rollout) -> None:
    """Our ``decode_ids`` of every iteration's official ids equals the oracle's decode of its codes
    and the official rollout's reconstruction (float32, within 1e-4)."""
    for it in rollout["iters"]:
        ids = it["ids"]
        ours = model.decode_ids(ids, torch.full((ids.shape[0],), ids.shape[1]), clamp=False)
        torch.testing.assert_close(ours, oracle.official_decode_codes(sd, cfg, it["codes"]), atol=1e-4, rtol=0)
        torch.testing.assert_close(ours, it["recon"], atol=1e-4, rtol=0)
