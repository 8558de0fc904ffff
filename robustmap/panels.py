"""Heatmap panels: the images behind the numbers, with their heatmaps, boxes and adversarials.

Nothing here runs the model. The adversarial image of each search is rebuilt from what the search
job recorded: the image's gradient sign (the search's own, so the image drawn is the one the
search probed, bit for bit) at the search table's minimal epsilon. The label shown under it is
the search table's ``adversarial_label``, never a re-derived one: near the flip a recomputation
can disagree with what the search recorded.

A PGD search leaves no sign to rebuild from: its adversarial image is the witness the search job
recorded, ``clip(x + delta, 0, 1)`` with the signs file's ``pgd_delta_<kind>``
(:func:`robustmap.schema.pgd_delta_key`), shown beside that kind's FGSM image. Without those
arrays (PGD off) the panel has no PGD column and is the FGSM-only panel, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from robustmap import classes, measure, search
from robustmap.epsilon_table import attack_rows
from robustmap.figures import new_figure
from robustmap.kinds import HEATMAP_KINDS, search_order
from robustmap.schema import FGSM, PGD, pgd_delta_key

BOX_COLOUR = "#00FF66"  # the human box, visible on photos and on both colour maps


def select_heatmaps(
    shard_arrays: Sequence[Mapping[str, np.ndarray]], image_ids: Sequence[str]
) -> dict[str, np.ndarray]:
    """The heatmaps of ``image_ids`` (in that order) from a model's heatmap shards.

    Returns:
        gradcam and saliency, float32 [N, H, W] each.

    Raises:
        KeyError: an image id is in no shard.
    """
    found = select_rows(shard_arrays, image_ids, HEATMAP_KINDS)
    return {kind: found[kind].astype(np.float32) for kind in HEATMAP_KINDS}


def select_rows(
    shard_arrays: Sequence[Mapping[str, np.ndarray]],
    image_ids: Sequence[str],
    keys: Sequence[str],
) -> dict[str, np.ndarray]:
    """The rows of ``image_ids`` (in that order) of arrays ``keys`` from per-shard arrays that
    carry an ``image_id`` column (heatmap shards, gradient-sign shards).

    Raises:
        KeyError: an image id is in no shard.
    """
    found: dict[str, dict[str, np.ndarray]] = {}
    wanted = set(image_ids)
    for arrays in shard_arrays:
        for position, image_id in enumerate(arrays["image_id"].astype(str)):
            if image_id in wanted:
                found[image_id] = {key: arrays[key][position] for key in keys}
    missing = [image_id for image_id in image_ids if image_id not in found]
    if missing:
        raise KeyError(f"no {', '.join(keys)} for images {missing}")
    return {key: np.stack([found[i][key] for i in image_ids]) for key in keys}


def select_pgd_deltas(
    shard_arrays: Sequence[Mapping[str, np.ndarray]],
    image_ids: Sequence[str],
    kinds: Sequence[str],
) -> dict[str, np.ndarray]:
    """The PGD witness perturbations of ``image_ids`` (in that order) of every kind among
    ``kinds`` whose ``pgd_delta_<kind>`` every signs shard carries; none when PGD was off.

    Returns:
        kind -> float16 [N, H, W, 3], as recorded (:func:`pgd_examples` adds it to the images).
    """
    keys = {
        kind: key
        for kind in search_order(kinds)
        if shard_arrays and all((key := pgd_delta_key(kind)) in a for a in shard_arrays)
    }
    found = select_rows(shard_arrays, image_ids, list(keys.values())) if keys else {}
    return {kind: found[key] for kind, key in keys.items()}


def adversarial_examples(
    images: np.ndarray,
    signs: np.ndarray,
    *,
    weights: Mapping[str, np.ndarray | None],
    epsilons: Mapping[str, np.ndarray],
    eps_max: float,
    adversarial_labels: Mapping[str, np.ndarray],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each search's adversarial image at its minimal epsilon, with the label it recorded.

    Args:
        images: float32 [N, H, W, 3] in [0, 1].
        signs: the sign of each image's clean cross-entropy gradient, as the search job recorded
            it (int8 [N, H, W, 3]; :func:`robustmap.search.minimal_epsilons`' ``sign_out``).
        weights: per search kind, the search's pixel weights [N, H, W] (None: uniform).
        epsilons: per search kind, float64 [N] minimal epsilons (inf: censored, drawn at
            ``eps_max``; nan: no epsilon, the clean image is shown).
        adversarial_labels: per search kind, the labels the search recorded (int64 [N]).

    Returns:
        kind -> (adversarial images float32 [N, H, W, 3], labels int64 [N]), each image equal
        to the search's own probe at that epsilon (:func:`robustmap.search.perturb`).
    """
    sign = np.asarray(signs).astype(np.float32)
    examples = {}
    for kind, kind_weights in weights.items():
        direction = search.weighted_direction(sign, kind_weights)
        eps = np.asarray(epsilons[kind], dtype=np.float64)
        eps = np.where(np.isnan(eps), 0.0, np.minimum(eps, eps_max))
        adversarial = search.perturb(images, direction, eps)
        examples[kind] = (adversarial, np.asarray(adversarial_labels[kind], dtype=np.int64))
    return examples


def model_panel(
    *,
    name: str,
    chosen: pd.DataFrame,
    images: np.ndarray,
    labels: np.ndarray,
    signs: np.ndarray,
    heatmaps: Mapping[str, np.ndarray],
    epsilons: pd.DataFrame,
    object_mask: str,
    threshold: str,
    eps_max: float,
    boxes: np.ndarray | None = None,
    box_valid: np.ndarray | None = None,
    box_border: int = 0,
    pgd_deltas: Mapping[str, np.ndarray] | None = None,
) -> Figure:
    """The heatmap panel of one model's chosen images (see :func:`heatmap_panel`).

    Args:
        chosen: image_id, role of the images to show (from
            :func:`robustmap.epsilon_table.extreme_images`), in row order.
        images, labels: those images (float32 [N, H, W, 3]) and true labels (int64 [N]).
        signs: their gradient signs from the search job (int8 [N, H, W, 3], :func:`select_rows`).
        heatmaps: gradcam and saliency [N, H, W] of those images (:func:`select_heatmaps`).
        epsilons: the model's merged epsilon table; its ``adversarial_label`` captions each
            adversarial image.
        object_mask, threshold: the searches' object-weight settings, so the mask and the
            adversarial images are the ones the searches used.
        boxes, box_valid: the images' human boxes in their frame (int [N, 4]) and which are
            valid; drawn on the image and the heatmaps, and the weights of the box searches
            (with ``box_border``).
        pgd_deltas: per PGD kind, the PGD witness perturbations of those images (float16
            [N, H, W, 3], the signs file's ``pgd_delta_<kind>``); each gets a PGD column
            captioned from the table's PGD rows. None or empty: no PGD column.
    """
    ids = chosen["image_id"].astype(str).tolist()
    fgsm = attack_rows(epsilons, FGSM)
    names = search_order(fgsm["search"].unique())
    table = {
        kind: fgsm[fgsm["search"] == kind].set_index("image_id").reindex(ids) for kind in names
    }
    by_kind = {kind: rows["epsilon"].to_numpy(dtype=np.float64) for kind, rows in table.items()}
    cam = heatmaps["gradcam"]
    weights = measure.search_weights_by_kind(
        names,
        cam,
        object_mask=object_mask,
        threshold=threshold,
        boxes=boxes,
        box_valid=box_valid,
        box_border=box_border,
        shape=images.shape[1:3],
    )
    recorded = {
        kind: rows["adversarial_label"].fillna(-1).to_numpy(np.int64)
        for kind, rows in table.items()
    }
    adversarial = adversarial_examples(
        images,
        signs,
        weights=weights,
        epsilons=by_kind,
        eps_max=eps_max,
        adversarial_labels=recorded,
    )
    titles = [
        f"{role}\n{classes.class_name(int(label))}"
        for role, label in zip(chosen["role"], labels, strict=True)
    ]
    shown_boxes = None if boxes is None else np.where(np.asarray(box_valid)[:, None], boxes, -1)
    return heatmap_panel(
        images,
        saliency=heatmaps["saliency"],
        gradcam=cam,
        object_mask=measure.search_weights(
            "object", cam, object_mask=object_mask, threshold=threshold
        ),
        adversarial=adversarial,
        epsilons=by_kind,
        row_titles=titles,
        class_name=classes.class_name,
        eps_max=eps_max,
        title=f"{name}: most sensitive and most robust images (uniform search)",
        boxes=shown_boxes,
        pgd=pgd_examples(
            images,
            pgd_deltas or {},
            attack_rows(epsilons, PGD),
            ids,
            class_name=classes.class_name,
            eps_max=eps_max,
        ),
    )


def pgd_examples(
    images: np.ndarray,
    deltas: Mapping[str, np.ndarray],
    rows: pd.DataFrame,
    image_ids: Sequence[str],
    *,
    class_name: Callable[[int], str],
    eps_max: float,
) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Each PGD kind's adversarial images and their captions.

    Args:
        images: float32 [N, H, W, 3] in [0, 1], rows in ``image_ids`` order.
        deltas: kind -> the recorded PGD witness perturbations of those images (float16
            [N, H, W, 3]; zeros where PGD found no flip).
        rows: the PGD rows of the model's epsilon table (image_id, search, epsilon, status,
            adversarial_label).

    Returns:
        kind -> (``clip(x + delta, 0, 1)`` float32 [N, H, W, 3], one caption per image: the PGD
        epsilon and the label the search recorded, or why there is none).
    """
    examples = {}
    for kind, delta in deltas.items():
        found = rows[rows["search"] == kind].set_index("image_id").reindex(list(image_ids))
        adversarial = np.clip(images + np.asarray(delta).astype(np.float32), 0.0, 1.0)
        captions = [
            _adversarial_caption(float(epsilon), label, class_name, eps_max, status=status)
            for epsilon, label, status in zip(
                found["epsilon"].to_numpy(dtype=np.float64),
                found["adversarial_label"].fillna(-1).to_numpy(np.int64),
                found["status"] if "status" in found else [None] * len(found),
                strict=True,
            )
        ]
        examples[kind] = (adversarial, captions)
    return examples


def heatmap_panel(
    images: np.ndarray,
    *,
    saliency: np.ndarray,
    gradcam: np.ndarray,
    object_mask: np.ndarray,
    adversarial: Mapping[str, tuple[np.ndarray, np.ndarray]],
    epsilons: Mapping[str, np.ndarray],
    row_titles: Sequence[str],
    class_name: Callable[[int], str],
    eps_max: float,
    title: str = "",
    boxes: np.ndarray | None = None,
    pgd: Mapping[str, tuple[np.ndarray, Sequence[str]]] | None = None,
) -> Figure:
    """Rows = images; columns = image | saliency | Grad-CAM | object mask | adversarial per search
    (a PGD kind's PGD adversarial right after its FGSM one).

    Args:
        images: float32 [N, H, W, 3]; saliency, gradcam: raw maps [N, H, W] (normalised here
            for display, per map, to its 99th percentile); object_mask: weights [N, H, W] in [0, 1].
        adversarial: kind -> (images [N, H, W, 3], predicted labels [N]), from
            :func:`adversarial_examples`.
        epsilons: kind -> float64 [N] minimal epsilons (inf censored, nan none).
        row_titles: one label per image (e.g. "most sensitive: tabby").
        class_name: ImageNet index -> readable name, for the adversarial predictions.
        boxes: int [N, 4] human boxes (x0, y0, x1, y1 inclusive; a row of -1: none), drawn in
            green on the image, saliency and Grad-CAM columns.
        pgd: kind -> (PGD adversarial images [N, H, W, 3], captions [N]), from
            :func:`pgd_examples`; None: no PGD column.
    """
    from robustmap.heatmaps import normalise_for_display

    attacked = _adversarial_columns(adversarial, epsilons, pgd or {}, class_name, eps_max)
    columns = ["image", "saliency", "Grad-CAM", "object mask", *attacked]
    count = len(images)
    figure = new_figure(1.7 * len(columns), 1.9 * max(count, 1) + 0.5)
    axes = figure.subplots(max(count, 1), len(columns), squeeze=False)
    if title:
        figure.suptitle(title)
    shown = {
        "saliency": normalise_for_display(saliency),
        "Grad-CAM": normalise_for_display(gradcam),
    }
    for row in range(count):
        cells = [
            (images[row], None, None),
            (shown["saliency"][row], "inferno", (0, 1)),
            (shown["Grad-CAM"][row], "jet", (0, 1)),
            (object_mask[row], "gray", (0, 1)),
        ]
        for ax, (picture, cmap, limits) in zip(axes[row], cells, strict=False):
            vmin, vmax = limits or (None, None)
            ax.imshow(picture, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        axes[row, 0].set_ylabel(row_titles[row], fontsize=7)
        if boxes is not None and boxes[row][0] >= 0:
            for ax in axes[row, :3]:
                _draw_box(ax, boxes[row])
        for ax, (pictures, captions) in zip(axes[row, 4:], attacked.values(), strict=True):
            ax.imshow(pictures[row], interpolation="nearest")
            ax.set_xlabel(captions[row], fontsize=6)
    for ax, name in zip(axes[0], columns, strict=True):
        ax.set_title(name, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return figure


def _adversarial_columns(
    adversarial: Mapping[str, tuple[np.ndarray, np.ndarray]],
    epsilons: Mapping[str, np.ndarray],
    pgd: Mapping[str, tuple[np.ndarray, Sequence[str]]],
    class_name: Callable[[int], str],
    eps_max: float,
) -> dict[str, tuple[np.ndarray, Sequence[str]]]:
    """Column title -> (adversarial images, captions): each FGSM kind in the study's order, its
    PGD column (if any) right after it."""
    columns: dict[str, tuple[np.ndarray, Sequence[str]]] = {}
    for kind in search_order([*adversarial, *pgd]):
        if kind in adversarial:
            pictures, predicted = adversarial[kind]
            captions = [
                _adversarial_caption(epsilon, label, class_name, eps_max)
                for epsilon, label in zip(epsilons[kind], predicted, strict=True)
            ]
            columns[f"{kind} search"] = (pictures, captions)
        if kind in pgd:
            columns[f"{kind} {PGD.upper()}"] = pgd[kind]
    return columns


def _draw_box(ax, box: np.ndarray) -> None:
    """An inclusive pixel box (x0, y0, x1, y1) as a rectangle around those pixels."""
    x0, y0, x1, y1 = (int(v) for v in box)
    ax.add_patch(
        Rectangle(
            (x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, color=BOX_COLOUR, lw=1.2
        )
    )


def _adversarial_caption(
    epsilon: float,
    predicted: int,
    class_name: Callable[[int], str],
    eps_max: float,
    *,
    status: str | None = None,
) -> str:
    """Under an adversarial image: its epsilon and recorded label, or why it has none (the
    search ``status``, where given)."""
    if np.isnan(epsilon):
        return "no epsilon" if status is None or pd.isna(status) else f"no epsilon ({status})"
    if np.isinf(epsilon):
        return f"not flipped up to eps={eps_max:g}"
    return f"eps={epsilon:.4g}\n-> {class_name(int(predicted))}"
