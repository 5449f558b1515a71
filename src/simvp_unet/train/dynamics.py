"""Training the dynamics: the network that forecasts where tracked objects go (`objects.dynamics`).

    simvp-unet label --data data/bench --segmenter runs/seg         # pseudo-labels for unlabeled/
    simvp-unet train dynamics --data data/bench --preset cpu --out runs/dyn

Trains on tracks (`simvp_unet.objects.cache`: extracted once from the true masks of the
labeled videos and the pseudo-labels of the unlabeled ones, then read from one file). Before
the first step, the ground plane, the constant-velocity forecast (`objects-cv`) and the
simulator's numbers (`objects.physics`) are fitted to the training tracks; the network starts
equal to the fitted simulator and learns corrections, the simulator's numbers fixed
(`train_physics`).
Each sample is a window of the input frames (11 in the competition's task shape) starting at
frame 1..`window_shift`+1 with the frames after it as targets (more examples of collisions than frame 12..22 alone), mirrored
left-right at random (the camera has no roll, so a mirrored scene is a possible one).
Once a camera is fitted, every sighting of the training and validation videos is placed by
its silhouette (`place_sightings`, the served forecast's `objects.placing.whole_centers`), and
the model learns from those centers, inputs and targets, as it will be served: a box center
cut by the border, partly hidden or on a segmenter's ragged edge is off by pixels, and a model
trained on box centers learns their errors.
The loss is the pixel distance between forecast and true centers where the object is seen
whole, each capped (`loss_clip`: the score is made of the many small errors, not of the few
forecasts that are far off whatever the model does); validation reports that distance at frame
22 for the network and the fitted constant velocity.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm import tqdm

from ..classes import BACKGROUND
from ..data.layout import COMPETITION, TaskShape, load_mask_file
from ..data.manifest import task_shape
from ..errors import ConfigError, DataError
from ..inference import check_network
from ..models.export import with_legacy_weights
from ..objects.cache import mask_files, split_tracks
from ..objects.camera import fit_camera
from ..objects.dynamics import DynamicsNet, DynamicsNetConfig
from ..objects.motion import consistent_sightings, fit_constant_velocity
from ..objects.placing import place_tracks
from ..objects.serve import Dynamics
from ..objects.tracks import extract_tracks
from ..viz import draw_path
from .common import TrainModule, TrainSettings, picture_rows, shaped
from .splits import check_splits, masked_splits, require_true_masks

TRACK_FIELDS = ("classes", "present", "center", "whole", "size", "area", "pseudo")
# Videos the fits before training use at most (a fixed random subset of larger training sets):
# the physics fit simulates every one of them at each of its gradient steps, so its time grows
# with their number while the few fitted numbers stop changing long before.
FIT_VIDEOS = 1000
# Pixels at which the fit of the starting path's tolerance stops counting a forecast's error (about
# an object's width: further off, the painted object misses either way). Pseudo-label tracks hold
# a few forecasts thousands of pixels off (a sighting far above the image's top border maps near
# the horizon), which would otherwise decide the fit.
WINDOW_FIT_CLIP = 20.0
PLACE_CHUNK = 16  # videos placed at once (`place_sightings`)


@dataclass
class DynamicsConfig(TrainSettings):
    """Settings of `simvp-unet train dynamics` (see `TrainSettings` for the shared ones;
    `resolution` is not used: tracks are in pixels of the dataset's frames).

    Args:
        train_splits: splits whose tracks train the model (true masks, else pseudo-labels).
        window_shift: input windows start at frame 1 .. 1 + window_shift (0: frames 1..11 only).
        mirror: flip samples left-right at random.
        fit_iterations: gradient steps of each stage of fitting the physics before training
            (`objects.physics.Physics.fit`).
        filter_pseudo: drop the sightings of pseudo-label tracks that cannot be one whole object
            (`objects.motion.consistent_sightings`) once the ground plane is fitted.
        floor: fit a camera to the training tracks (`objects.camera.fit_camera`) and move the
            objects on the floor it sees; False, or when no camera fits: on the ground plane.
        train_physics: refine the simulator's fitted numbers in training, together with the
            network; False: they stay as `fit_to_data` fitted them and the network alone learns
            (refined together, they served worse on every set measured:
            benchmarks/results/pipelines.md).
        loss_clip: the most one object's error in one frame counts in the loss (its smooth L1
            distance, about pixels; 0: no limit). A forecast further off (an object entering the
            view, a pseudo-label's stray box) is no use painted either way, and without the
            limit its gradient pulls the model away from the many small errors the score is
            made of.
        tracks_dir: folder of the track caches (`objects.cache`); None: DATA/tracks. Name a
            writable folder to train on a read-only dataset without extracting the tracks again
            at every start.
        model: the dynamics network.
    """

    train_splits: list[str] = field(default_factory=lambda: ["train", "unlabeled"])
    window_shift: int = 5
    mirror: bool = True
    fit_iterations: int = 300
    filter_pseudo: bool = True
    floor: bool = True
    train_physics: bool = False
    loss_clip: float = 5.0
    tracks_dir: str | None = None
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    pictures: int = 4
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "64-true"] = "32-true"
    model: DynamicsNetConfig = field(default_factory=DynamicsNetConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.window_shift < 0:
            raise ValueError(f"window_shift must be >= 0, got {self.window_shift}")
        if not self.train_splits:
            raise ValueError("train_splits must name at least one split")
        if self.loss_clip < 0:
            raise ValueError(f"loss_clip must be >= 0, got {self.loss_clip}")
        if self.fit_iterations < 1:
            raise ValueError(f"fit_iterations must be >= 1, got {self.fit_iterations}")
        check_network(self.model, Dynamics.NETWORK)


class TrackDataset(Dataset):
    """The tracks of videos as tensors, one video per item (see `objects.cache.split_tracks`).

    Args:
        arrays: the cache's arrays of one or more splits (N rows each).
        masks: the mask file of each row (`objects.cache.mask_files`), read again to place the
            sightings (`place_sightings`); None: they are not placed (box centers).
    """

    def __init__(self, arrays: dict[str, np.ndarray], masks: list[Path] | None = None) -> None:
        self.arrays = {k: torch.from_numpy(np.ascontiguousarray(arrays[k])) for k in TRACK_FIELDS}
        if masks is not None and len(masks) != len(self):
            raise ValueError(f"{len(masks)} mask files for {len(self)} videos of tracks")
        self.masks = masks
        self.filtered = False  # the pseudo-label sightings checked (`DynamicsModule.filter_pseudo`)

    def __len__(self) -> int:
        return len(self.arrays["classes"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.arrays.items()}


@torch.no_grad()
def place_sightings(model: DynamicsNet, dataset: TrackDataset, *, progress: bool = True) -> None:
    """Every sighting of `dataset`'s videos placed by its silhouette, as the served forecast
    places them (`objects.placing.place_tracks`, with `model`'s fitted camera and plane):
    kept as its "placed" array (N, K, T, 2), pixels, in the slots of its tracks. Nothing is done
    without a camera or the videos' mask files, or when it is placed already."""
    camera = model.floor.camera()
    if camera is None or dataset.masks is None or "placed" in dataset.arrays:
        return
    a = dataset.arrays
    placed = a["center"].clone().float()
    with tqdm(total=len(dataset), desc="placing sightings", unit="video", disable=not progress,
              file=sys.stderr) as bar:
        for start in range(0, len(dataset), PLACE_CHUNK):
            files = dataset.masks[start:start + PLACE_CHUNK]
            masks = torch.from_numpy(np.stack([load_mask_file(path) for path in files]))
            tracks = extract_tracks(masks)
            k, cached = tracks.classes.shape[1], a["classes"][start:start + len(files)]
            # the cache's slots, but for objects `filter_pseudo` removed
            if k > cached.shape[1] or bool(((tracks.classes != cached[:, :k]) & (cached[:, :k] != BACKGROUND)).any()):
                raise DataError(f"the tracks cache does not match the masks of {files[0].parent.parent}: "
                                "delete its tracks folder and train again")
            placed[start:start + len(files), :k] = place_tracks(camera, model.plane, tracks, tracks.present)[1]
            bar.update(len(files))
    a["placed"] = placed


def window(batch: dict[str, torch.Tensor], shift: int, shape: TaskShape) -> tuple[torch.Tensor, ...]:
    """Inputs and targets of windows of `shape`'s input frames starting at frame `shift`
    (0-based); the targets are the shape's forecast frames after it (those the video has).

    Returns:
        classes (B, K) (0 where the object is not seen in the input), present (B, K, 11),
        center (B, K, 11, 2), box size (B, K, 11, 2), placed centers (B, K, 11, 2) (None for
        tracks not placed: `place_sightings`), target centers (B, K, 11, 2) (placed ones where
        there are any) and where they count (B, K, 11).
    """
    end = shift + shape.input_frames
    # slots are filled from the first: cut the empty tail shared by the whole batch (pairs of
    # objects cost K^2)
    used = int((batch["classes"] != BACKGROUND).any(0).nonzero().max()) + 1 if batch["classes"].any() else 1
    batch = {k: v[:, :used] if v.ndim > 1 else v for k, v in batch.items()}
    present = batch["present"][:, :, shift:end]
    valid = (batch["classes"] != BACKGROUND) & present.any(-1)
    classes = torch.where(valid, batch["classes"], BACKGROUND)
    b, k = classes.shape
    future = shape.future_frames
    centers = batch.get("placed", batch["center"])
    target = centers.new_zeros(b, k, future, 2)
    counts = torch.zeros(b, k, future, dtype=torch.bool, device=classes.device)
    frames = min(shape.frames - end, future)
    target[:, :, :frames] = centers[:, :, end : end + frames]
    counts[:, :, :frames] = batch["whole"][:, :, end : end + frames] & valid.unsqueeze(-1)
    placed = batch["placed"][:, :, shift:end] if "placed" in batch else None
    return (classes, present, batch["center"][:, :, shift:end], batch["size"][:, :, shift:end], placed, target,
            counts)


def mirrored(center: torch.Tensor, width: float) -> torch.Tensor:
    """Centers (..., 2) flipped left-right in an image `width` pixels wide."""
    return torch.stack([width - center[..., 0], center[..., 1]], -1)


def fit_rows(chosen: torch.Tensor) -> torch.Tensor:
    """Indices of the videos of bool mask `chosen` that the fits read: all of them, or a fixed
    random `FIT_VIDEOS` of them (each fitting step simulates every video given)."""
    rows = chosen.nonzero().flatten()
    if len(rows) > FIT_VIDEOS:
        keep = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))[:FIT_VIDEOS]
        rows = rows[keep.sort().values]
    return rows


class DynamicsModule(TrainModule):
    """Object dynamics: tracks in, forecast centers out, trained on pixel distance.

    Args:
        config: the resolved `DynamicsConfig`.
        shape: the data's task shape.
    """

    kind = "dynamics"
    config_class = DynamicsConfig
    in_memory_data = True  # the tracks
    monitor = "val/error"
    monitor_mode = "min"

    def __init__(self, config: DynamicsConfig, shape: TaskShape = COMPETITION) -> None:
        super().__init__(config, shape)
        self.model = DynamicsNet(config.model)
        self._progress = True  # progress bars while placing sightings (`use_datasets`)
        weights = torch.linspace(0.5, 1.5, shape.future_frames)  # later frames matter more
        self.register_buffer("frame_weights", weights / weights.mean(), persistent=False)

    @classmethod
    def for_shape(cls, config: DynamicsConfig, shape: TaskShape) -> DynamicsConfig:
        """The network forecasts the shape's frames in pixels of its frames; windows fit its videos."""
        if not config.window_shift < shape.frames - shape.input_frames:
            raise ConfigError(f"window_shift must be in 0..{shape.frames - shape.input_frames - 1} (windows of "
                              f"{shape.input_frames} input frames in {shape.frames}-frame videos), got "
                              f"{config.window_shift}")
        if config.model.history >= shape.input_frames:
            raise ConfigError(f"model.history={config.model.history} displacements need {config.model.history + 1} "
                              f"input frames; the data has {shape.input_frames}: set model.history="
                              f"{shape.input_frames - 1} or less")
        return dataclasses.replace(config, model=shaped(config.model, {"steps": shape.future_frames,
                                                                       "image_size": shape.size}, shape))

    @classmethod
    def datasets(cls, config: DynamicsConfig, root: Path) -> tuple[TrackDataset, TrackDataset]:
        """(train, val): the tracks of the masked training splits and of the val split's true
        masks, extracted once and cached beside the data or in `tracks_dir` (`objects.cache`).
        Fails when the training tracks hold no object, or no validation object is seen whole
        in frame 22 (the error would be 0 whatever the network)."""
        check_splits(root, [*config.train_splits, config.val_split])
        require_true_masks(root, config.val_split, "the dynamics validates on true masks")
        splits = masked_splits(root, config.train_splits, cls.kind)
        parts = [split_tracks(root, split, cache_dir=config.tracks_dir) for split in splits]
        train = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        val = split_tracks(root, config.val_split, cache_dir=config.tracks_dir)
        if not (train["classes"] != BACKGROUND).any():
            raise DataError(f"no tracks in the training splits: the masks of {', '.join(str(root / s) for s in splits)} "
                            "hold no objects (background only); nothing to learn the dynamics from")
        shape = task_shape(root)
        *_, counts = window({k: torch.from_numpy(val[k]) for k in TRACK_FIELDS}, 0, shape)
        if not counts[:, :, shape.target_in_future].any():
            raise DataError(f"the validation split has no objects: no mask of {root / config.val_split} holds an "
                            f"object seen whole in frame {shape.target + 1}, so val/error would be 0 whatever "
                            "is learned")
        files = [path for split in splits for _, path, _ in mask_files(root, split)]
        return TrackDataset(train, files), TrackDataset(val, [path for _, path, _ in mask_files(root, config.val_split)])

    @property
    def served(self) -> Dynamics:
        """The served module around `self.model` (`forecast_objects`)."""
        return Dynamics(self.model, shape=self.shape)

    def setup(self, stage: str) -> None:
        pass  # no convolutions: the memory format of the base class does not apply

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The network's weights; with `train_physics`, the simulator's fitted numbers too,
        without weight decay (it would pull the logarithms of frictions and masses toward 0,
        friction toward 1, and the metric toward 0). Without it they are frozen."""
        physics = list(self.model.physics.parameters())
        ids = {id(p) for p in physics}
        rest = [p for p in self.parameters() if id(p) not in ids]
        if not self.config.train_physics:
            for p in physics:
                p.requires_grad_(False)
            return [{"params": rest}]
        return [{"params": rest}, {"params": physics, "weight_decay": 0.0}]

    @torch.no_grad()
    def fit_to_data(self, train_set: TrackDataset) -> None:
        """Fit the ground plane, the camera, the constant-velocity forecast and the physics to
        the training tracks of true masks (all tracks when there are none): pseudo-label noise
        in the velocities pulls the fitted damping down (benchmarks/results/pipelines.md), and
        the few pseudo-label boxes that span two blobs make the physics fit diverge
        (benchmarks/results/dynamics_data.md). Pseudo-label tracks are filtered (`filter_pseudo`)
        once the plane is fitted; the tolerance of the starting path (`Physics.fit_window`) is
        then fitted to them, where there are any (the served forecast reads segmented masks), on
        the scored frame. Once the camera is fitted, the sightings are placed by their
        silhouettes (`place_sightings`) and every fit reads those centers."""
        pseudo = train_set.arrays["pseudo"]
        rows = fit_rows(~pseudo if not pseudo.all() else pseudo)
        a = {k: v[rows] for k, v in train_set.arrays.items()}
        self.model.plane.fit(a["classes"].numpy(), a["center"].numpy(), a["size"].numpy(),
                             a["whole"].numpy())
        if self.config.floor:
            camera = fit_camera(a["classes"].numpy(), a["center"].numpy(), a["size"].numpy(),
                                a["whole"].numpy(), image_size=self.shape.size)
            if camera is None:
                print("no camera fits the training tracks: objects move on the ground plane", file=sys.stderr)
            else:
                self.model.floor.set(camera)
        if self.config.filter_pseudo and pseudo.any():
            self.filter_pseudo(train_set)
        place_sightings(self.model, train_set, progress=self._progress)
        classes, present, filled, scale, error = self.fit_tracks(train_set, rows)
        steps = self.config.model.steps
        frames, damping, _ = fit_constant_velocity(filled, error, steps=steps, present=present)
        self.model.set_constant_velocity(frames=frames, damping=damping)
        with torch.enable_grad():
            scores = self.model.physics.fit(classes, filled, error, diameter=self.model.object_width(),
                                            present=present, scale=scale, steps=steps,
                                            iterations=self.config.fit_iterations)
        classes, present, filled, scale, error = self.fit_tracks(train_set, fit_rows(pseudo) if pseudo.any() else rows,
                                                                 scored_only=True, clip=WINDOW_FIT_CLIP)
        scores["window"] = self.model.physics.fit_window(classes, filled, error, present=present, scale=scale,
                                                         steps=steps)
        print("fitted physics: forecast error " + ", ".join(f"{k} {v:.3f} px" for k, v in scores.items())
              + f"; starting paths within {float(self.model.physics.window):g} px", file=sys.stderr)

    def fit_tracks(self, train_set: TrackDataset, rows: torch.Tensor, *, scored_only: bool = False,
                   clip: float | None = None) -> tuple[torch.Tensor, ...]:
        """What the fits read of the training videos `rows`: classes, presence (sightings
        checked), past positions in motion space, pixels per motion unit, and the mean distance
        (px, each at most `clip`) of a forecast in motion space to the true centers where seen
        whole, over the forecast frames (`scored_only`: the scored frame only)."""
        a = {k: v[rows] for k, v in train_set.arrays.items()}
        classes, present, center, size, placed, target, counts = window(a, 0, self.shape)
        if scored_only:
            counts = counts & (torch.arange(counts.shape[-1]) == self.shape.target_in_future)
        present = self.model.sightings(classes, present, center, size)
        filled = self.model.past(classes, present, center, size) if placed is None else self.model.past(
            classes, present, placed)

        def error(forecast: torch.Tensor) -> torch.Tensor:
            distance = (self.model.to_pixels(forecast) - target).norm(dim=-1)
            if clip is not None:
                distance = distance.clamp_max(clip)
            return (distance * counts).sum() / counts.sum().clamp_min(1)

        return classes, present, filled, self.model.pixel_scale(filled), error

    @torch.no_grad()
    def filter_pseudo(self, train_set: TrackDataset) -> None:
        """Drop, in place, the sightings of the pseudo-label tracks that are not consistent with
        one whole object on the fitted ground plane (`objects.motion.consistent_sightings`): they
        are neither inputs nor targets; objects left with too few sightings are removed."""
        a = train_set.arrays
        rows = a["pseudo"]
        if not rows.any() or train_set.filtered:
            return
        train_set.filtered = True
        present = a["present"][rows]
        keep = consistent_sightings(a["classes"][rows], present, a["center"][rows], a["size"][rows],
                                    self.model.plane, area=a["area"][rows])
        a["present"][rows] = keep
        a["whole"][rows] &= keep
        a["classes"][rows] = torch.where(keep.any(-1), a["classes"][rows], BACKGROUND)
        dropped, seen = int((present & ~keep).sum()), int(present.sum())
        print(f"pseudo-label tracks: {dropped} of {seen} sightings dropped as inconsistent", file=sys.stderr)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A run made before the network had some of its weights resumes with the values that
        keep its forecast (`DynamicsNet.legacy_weights`)."""
        super().on_load_checkpoint(checkpoint)
        checkpoint["state_dict"] = with_legacy_weights(self.model, checkpoint["state_dict"], prefix="model.")

    def use_datasets(self, train_set: TrackDataset, val_set: TrackDataset, *, progress: bool = True) -> None:
        """Keep the datasets: their sightings are placed once the camera is known (`on_fit_start`)."""
        self._datasets, self._progress = (train_set, val_set), progress

    def on_fit_start(self) -> None:
        """Before the first step, new or resumed (the camera and plane are restored by then):
        the pseudo-label sightings checked and every sighting placed (`place_sightings`), where
        `fit_to_data` has not done it already."""
        super().on_fit_start()
        train_set, val_set = getattr(self, "_datasets", (None, None))
        if train_set is None:
            return
        if self.config.filter_pseudo:
            self.filter_pseudo(train_set)
        for dataset in (train_set, val_set):
            place_sightings(self.model, dataset, progress=self._progress)

    def forward(self, classes: torch.Tensor, present: torch.Tensor, center: torch.Tensor,
                size: torch.Tensor, placed: torch.Tensor | None = None, *, learned: bool = True) -> torch.Tensor:
        """Forecast centers (B, K, forecast frames, 2) in pixels: from the box centers and sizes
        of the sightings, or (`placed`) from their placed centers, as served."""
        if placed is None:
            return self.model(classes, present, center, size=size, learned=learned)
        present = self.model.sightings(classes, present, center, size)
        return self.model(classes, present, placed, learned=learned)

    def _loss(self, pred: torch.Tensor, target: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        distance = F.smooth_l1_loss(pred, target, reduction="none").sum(-1)
        if self.config.loss_clip > 0:
            distance = distance.clamp_max(self.config.loss_clip)
        weights = counts * self.frame_weights
        return (distance * weights).sum() / weights.sum().clamp_min(1)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        shift = int(torch.randint(0, self.config.window_shift + 1, ()))
        classes, present, center, size, placed, target, counts = window(batch, shift, self.shape)
        if self.config.mirror and bool(torch.rand(()) < 0.5):
            width = float(self.config.model.image_size[1])
            center, target = mirrored(center, width), mirrored(target, width)
            placed = None if placed is None else mirrored(placed, width)
        loss = self._loss(self(classes, present, center, size, placed), target, counts)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(classes))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        classes, present, center, size, placed, target, counts = window(batch, 0, self.shape)
        n = len(classes)
        scored = self.shape.target_in_future
        last = counts[:, :, scored]
        for name, learned in (("error", True), ("error_cv", False)):
            pred = self(classes, present, center, size, placed, learned=learned)
            distance = (pred[:, :, scored] - target[:, :, scored]).norm(dim=-1)
            error = (distance * last).sum() / last.sum().clamp_min(1)
            self.log(f"val/{name}", error, prog_bar=learned, sync_dist=True, batch_size=n)
            if learned:
                self.log("val/loss", self._loss(pred, target, counts), sync_dist=True, batch_size=n)
                self.keep_for_pictures(batch_idx, classes=classes, present=present,
                                       center=center if placed is None else placed,
                                       target=target, counts=counts, pred=pred)

    def draw_picture(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        """Per video: past centers (white), true future (green), forecast (red), on black."""
        h, w = self.config.model.image_size
        images = []
        for i in range(len(batch["classes"])):
            canvas = np.zeros((h, w, 3), np.uint8)
            for k in range(batch["classes"].shape[1]):
                if batch["classes"][i, k] == BACKGROUND:
                    continue
                seen = batch["present"][i, k].numpy()
                draw_path(canvas, batch["center"][i, k].numpy()[seen], (255, 255, 255))
                true = batch["counts"][i, k].numpy()
                draw_path(canvas, batch["target"][i, k].numpy()[true], (0, 200, 0))
                draw_path(canvas, batch["pred"][i, k].numpy(), (230, 40, 40))
            images.append(canvas)
        return picture_rows([images], None)
