"""Building-block embeddings (discovery.generator.embeddings): decoding, invariance, training, persistence.

Small and seeded: 24 design-space BBs, a few epochs (the quality figures on the full subset are measured
separately, see the module docstring)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from discovery.library.building_blocks import BuildingBlock
from discovery.errors import EmbeddingError, UnknownBuildingBlockError
from discovery.generator import bb_encoder as enc
from discovery.generator import embeddings as emb
from discovery.generator.embeddings import BBEmbedding, design_space_bbs, train_embeddings


@pytest.fixture(scope="module")
def bbs() -> list[BuildingBlock]:
    """24 design-space BBs of several connection-point counts (edges, 3-, 4-, 6-c nodes...)."""
    all_bbs = design_space_bbs()
    edges = [b for b in all_bbs if b.kind == "edge"][:10]
    nodes = [b for b in all_bbs if b.kind == "node"][:14]
    return edges + nodes


@pytest.fixture(scope="module")
def embedding(bbs) -> BBEmbedding:
    return train_embeddings(bbs, dim=16, epochs=5, seed=0)


def test_design_space_bbs_are_the_curated_subset():
    from discovery.library.designspace import DesignSpace

    space = DesignSpace()
    chosen = design_space_bbs(space)
    assert 50 < len(chosen) < 1000
    assert all(space.keeps_metal_node(b) or space.keeps_organic_node(b) or space.keeps_edge(b) for b in chosen)
    assert {b.kind for b in chosen} == {"node", "edge"}


def test_embedding_shapes_and_normalisation(embedding, bbs):
    assert embedding.ids == [b.id for b in bbs]
    assert embedding.vectors.shape == (len(bbs), 16)
    np.testing.assert_allclose(np.linalg.norm(embedding.vectors, axis=1), np.sqrt(16), rtol=1e-5)
    assert list(embedding.n_connection_points) == [b.n_connection_points for b in bbs]
    np.testing.assert_array_equal(embedding.vector(bbs[3].id), embedding.vectors[3])
    # encoding the library again gives the stored vectors
    np.testing.assert_allclose(embedding.encode(bbs), embedding.vectors, atol=1e-5)
    with pytest.raises(UnknownBuildingBlockError):
        embedding.vector("N999999")


def test_decode_returns_library_bbs(embedding, bbs):
    ids = [b.id for b in bbs]
    # each library vector decodes to itself (rescaling does not matter: decoding compares directions)
    assert embedding.decode(embedding.vectors) == ids
    assert embedding.decode(0.3 * embedding.vectors) == ids
    rng = np.random.default_rng(0)
    random = rng.normal(size=(50, embedding.dim))
    assert set(embedding.decode(random)) <= set(ids)
    # restricted to a connection-point count, or to a kind
    cps = {b.id: b.n_connection_points for b in bbs}
    for n in sorted(set(cps.values())):
        assert all(cps[i] == n for i in embedding.decode(random, n_connection_points=n))
    per_row = rng.choice(sorted(set(cps.values())), size=len(random))
    assert [cps[i] for i in embedding.decode(random, n_connection_points=per_row)] == list(per_row)
    assert all(cps[i] == 2 for i in embedding.decode(random, kind="edge"))
    assert all(cps[i] != 2 for i in embedding.decode(random, kind="node"))
    with pytest.raises(EmbeddingError):
        embedding.decode(random, n_connection_points=11)  # no 11-c BB among these
    with pytest.raises(EmbeddingError):
        embedding.decode(random[:, :3])


def test_encoder_is_rotation_invariant(embedding, bbs):
    from scipy.spatial.transform import Rotation

    bb = next(b for b in bbs if b.n_connection_points == 4)
    rot = Rotation.random(random_state=1).as_matrix()
    moved = BuildingBlock(id=bb.id, symbols=bb.symbols, positions=bb.positions @ rot.T + [3.0, -2.0, 7.5],
                          connection_point_indices=bb.connection_point_indices, bonds=bb.bonds)
    np.testing.assert_allclose(embedding.encode([moved]), embedding.encode([bb]), atol=1e-5)


def test_training_step_lowers_contrastive_loss(bbs):
    subset = bbs[:20]
    config = enc.EncoderConfig(dim=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        encoder = enc.Encoder(config)
    graphs = [enc.bb_graph(b, config.cutoff) for b in subset]
    rng = np.random.default_rng(0)
    view1, view2 = (enc.collate(graphs, rng, noise=0.05, mask_fraction=0.15) for _ in range(2))
    raw = emb._aux_targets(subset)
    targets = torch.from_numpy(np.concatenate(
        [(raw[:, :4] - raw[:, :4].mean(0)) / (raw[:, :4].std(0) + 1e-6), raw[:, 4:]], axis=1)).float()
    opt = torch.optim.Adam(encoder.parameters(), lr=2e-3)
    losses = []
    for _ in range(6):
        contrastive, aux = emb._losses(encoder, view1, view2, targets, temperature=0.3)
        losses.append(contrastive.item())
        opt.zero_grad()
        (contrastive + aux).backward()
        opt.step()
    assert losses[-1] < losses[0]


def test_training_is_deterministic_and_save_load_round_trips(tmp_path, embedding, bbs):
    again = train_embeddings(bbs, dim=16, epochs=5, seed=0)
    # seeded: the same up to the rounding of threaded reductions (5e-7 seen on a loaded machine); an
    # unseeded run differs by O(1)
    np.testing.assert_allclose(again.vectors, embedding.vectors, rtol=1e-5, atol=1e-5)

    path = embedding.save(tmp_path / "bb_embedding.npz")
    assert path == tmp_path / "bb_embedding.npz" and path.exists()
    loaded = BBEmbedding.load(path)
    assert loaded.ids == embedding.ids
    np.testing.assert_array_equal(loaded.vectors, embedding.vectors)
    np.testing.assert_array_equal(loaded.n_connection_points, embedding.n_connection_points)
    np.testing.assert_array_equal(loaded.encode(bbs[:5]), embedding.encode(bbs[:5]))
    queries = np.random.default_rng(2).normal(size=(30, embedding.dim))
    assert loaded.decode(queries) == embedding.decode(queries)
    assert loaded.decode(queries, n_connection_points=2) == embedding.decode(queries, n_connection_points=2)

    (tmp_path / "junk.npz").write_bytes(b"not an npz")
    with pytest.raises(EmbeddingError):
        BBEmbedding.load(tmp_path / "junk.npz")
