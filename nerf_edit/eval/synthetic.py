"""Synthetic scenes with ground truth, for tests, demos and evaluation: analytic objects on a textured floor,
rendered with numpy (no nerfstudio: the files are nerfstudio's format, written directly).

Writes a nerfstudio `transforms.json` scene (images/, known intrinsics, a camera ring of varying height) and
per-view ground-truth object masks (masks/, one label per pixel: 0 background, k the k-th object) listed in
`masks.json`. The masks are deliberately *not* nerfstudio `mask_path` entries: those would exclude pixels from
training. Deterministic from the seed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from nerf_edit.core.io import atomic_save_image, atomic_write

MASKS_FILE = "masks.json"
JSON_DECIMALS = 10


@dataclass(frozen=True)
class Sphere:
    name: str
    center: tuple[float, float, float]
    radius: float
    color: tuple[float, float, float]


@dataclass(frozen=True)
class Box:
    name: str
    center: tuple[float, float, float]
    half_size: tuple[float, float, float]
    color: tuple[float, float, float]


@dataclass(frozen=True)
class SceneSpec:
    objects: tuple = (
        Sphere("red_ball", (-0.35, -0.1, 0.28), 0.28, (0.85, 0.12, 0.1)),
        Box("blue_cube", (0.38, 0.18, 0.22), (0.2, 0.2, 0.22), (0.12, 0.25, 0.85)),
    )
    floor_radius: float = 1.4
    floor_colors: tuple = ((0.82, 0.78, 0.68), (0.45, 0.42, 0.36))
    checker_size: float = 0.35
    light_direction: tuple[float, float, float] = (0.4, -0.3, 0.85)


def look_at(position: np.ndarray, target: np.ndarray = np.zeros(3), up: np.ndarray = np.array([0.0, 0, 1])) -> np.ndarray:
    """Camera-to-world [4, 4] in nerfstudio/OpenGL convention (camera looks down -z, +y up)."""
    back = position - target
    back = back / np.linalg.norm(back)
    right = np.cross(up, back)
    right = right / np.linalg.norm(right)
    cam_up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, cam_up, back, position
    return c2w


def camera_ring(num_views: int, seed: int, radius: float = 2.4) -> list[np.ndarray]:
    """Views around the origin; elevation swings between ~15 and ~50 degrees, azimuth jittered by the seed."""
    rng = np.random.default_rng(seed)
    poses = []
    for i in range(num_views):
        azimuth = 2 * math.pi * i / num_views + rng.uniform(-0.05, 0.05)
        elevation = math.radians(32 + 17 * math.sin(3 * 2 * math.pi * i / num_views))
        position = radius * np.array(
            [math.cos(azimuth) * math.cos(elevation), math.sin(azimuth) * math.cos(elevation), math.sin(elevation)]
        )
        poses.append(look_at(position, target=np.array([0.0, 0.0, 0.15])))
    return poses


def camera_rays(c2w: np.ndarray, width: int, height: int, focal: float, supersample: int = 1):
    """Ray origins and unit directions, [H*s, W*s, 3] each, through sub-pixel centres."""
    s = supersample
    u = (np.arange(width * s) + 0.5) / s
    v = (np.arange(height * s) + 0.5) / s
    uu, vv = np.meshgrid(u, v)
    directions = np.stack([(uu - width / 2) / focal, -(vv - height / 2) / focal, -np.ones_like(uu)], axis=-1)
    directions = directions @ c2w[:3, :3].T
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    origins = np.broadcast_to(c2w[:3, 3], directions.shape)
    return origins, directions


def intersect_sphere(origins, directions, sphere: Sphere):
    """Distance to the sphere [...] (inf for a miss) and the surface normal [..., 3]."""
    offset = origins - np.array(sphere.center)
    b = np.sum(offset * directions, axis=-1)
    c = np.sum(offset * offset, axis=-1) - sphere.radius**2
    disc = b * b - c
    t = -b - np.sqrt(np.maximum(disc, 0))
    t = np.where((disc > 0) & (t > 1e-6), t, np.inf)
    normals = (origins + directions * np.where(np.isfinite(t), t, 0)[..., None] - np.array(sphere.center)) / sphere.radius
    return t, normals


def intersect_box(origins, directions, box: Box):
    """Slab test for an axis-aligned box: distance [...] and normal [..., 3]."""
    low = np.array(box.center) - np.array(box.half_size)
    high = np.array(box.center) + np.array(box.half_size)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / directions
        t0, t1 = (low - origins) * inv, (high - origins) * inv
    t_near = np.nanmax(np.minimum(t0, t1), axis=-1)
    t_far = np.nanmin(np.maximum(t0, t1), axis=-1)
    t = np.where((t_near <= t_far) & (t_near > 1e-6), t_near, np.inf)
    axis = np.argmax(np.minimum(t0, t1), axis=-1)
    normals = np.zeros(directions.shape)
    sign = -np.sign(np.take_along_axis(directions, axis[..., None], axis=-1))[..., 0]
    np.put_along_axis(normals, axis[..., None], sign[..., None], axis=-1)
    return t, normals


def render_view(spec: SceneSpec, c2w: np.ndarray, width: int, height: int, focal: float, supersample: int = 2):
    """RGB [H, W, 3] float in [0, 1] (supersampled) and object labels [H, W] uint8 (pixel-centre rays)."""
    rgb = _shade(spec, *camera_rays(c2w, width, height, focal, supersample))[0]
    rgb = rgb.reshape(height, supersample, width, supersample, 3).mean(axis=(1, 3))
    labels = _shade(spec, *camera_rays(c2w, width, height, focal, 1))[1]
    return rgb, labels.astype(np.uint8)


# Where the seed cloud puts the sky: COLMAP finds no points there, and splatfacto would need thousands of steps to
# grow Gaussians into it from the scene's; a sphere of points this far from the scene's centre (every camera inside
# it) stands in for it.
SKY_RADIUS = 10.0


def surface_points(spec: SceneSpec, c2w: np.ndarray, width: int, height: int, focal: float):
    """The points a view's pixel-centre rays hit (the sky on a sphere of SKY_RADIUS), with their colours: [P, 3],
    [P, 3]"""
    origins, directions = camera_rays(c2w, width, height, focal, 1)
    color, _, depth = _shade(spec, origins, directions)
    along = np.sum(origins * directions, axis=-1)  # o·d; |o + t d| = R at t = -o·d + sqrt((o·d)² - |o|² + R²)
    sky = -along + np.sqrt(along**2 - np.sum(origins**2, axis=-1) + SKY_RADIUS**2)
    depth = np.where(np.isfinite(depth), depth, sky)
    return (origins + directions * depth[..., None]).reshape(-1, 3), color.reshape(-1, 3)


def write_point_cloud(path: Path, points: np.ndarray, colors: np.ndarray) -> None:
    """An ASCII .ply of points [M, 3] and colours [M, 3] in [0, 1] (what ns-process-data writes from COLMAP)."""
    header = ["ply", "format ascii 1.0", f"element vertex {len(points)}", "property float x", "property float y",
              "property float z", "property uchar red", "property uchar green", "property uchar blue", "end_header"]
    rows = [f"{x:.6f} {y:.6f} {z:.6f} {r} {g} {b}"
            for (x, y, z), (r, g, b) in zip(points, np.round(np.clip(colors, 0, 1) * 255).astype(int))]
    atomic_write(path, lambda tmp: tmp.write_text("\n".join(header + rows) + "\n"))


def _sky(directions):
    """The sky, a vertical gradient: colour [..., 3] of unit ray directions [..., 3]."""
    up = np.clip(directions[..., 2], -1, 1)[..., None]
    return (0.75 + 0.2 * up) * np.array([0.62, 0.75, 0.95])


def _shade_objects(objects, light, origins, directions, color, depth):
    """The objects where they are nearer than `depth` [...], Lambert-shaded under the unit `light`, over `color`
    [..., 3]. -> colour [..., 3], depth [...], labels [...] (0: none of them, k: objects[k - 1])"""
    labels = np.zeros(directions.shape[:-1], dtype=np.int64)
    for label, obj in enumerate(objects, start=1):
        t, normals = intersect_sphere(origins, directions, obj) if isinstance(obj, Sphere) else intersect_box(origins, directions, obj)
        nearer = t < depth
        lambert = np.clip(np.sum(normals * light, axis=-1), 0, 1)[..., None]
        obj_color = np.array(obj.color) * (0.35 + 0.65 * lambert)
        color = np.where(nearer[..., None], obj_color, color)
        labels = np.where(nearer, label, labels)
        depth = np.where(nearer, t, depth)
    return color, depth, labels


def _unit(vector) -> np.ndarray:
    return np.array(vector) / np.linalg.norm(vector)


def _shade(spec: SceneSpec, origins, directions):
    light = _unit(spec.light_direction)
    color = _sky(directions)
    depth = np.full(directions.shape[:-1], np.inf)
    # Floor: a checkered disk in the z = 0 plane.
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = -origins[..., 2] / directions[..., 2]
    hit = origins + directions * np.where(np.isfinite(t_floor), t_floor, 0)[..., None]
    on_floor = (t_floor > 1e-6) & (np.hypot(hit[..., 0], hit[..., 1]) < spec.floor_radius)
    checker = (np.floor(hit[..., 0] / spec.checker_size) + np.floor(hit[..., 1] / spec.checker_size)) % 2
    floor_color = np.where(checker[..., None] > 0, spec.floor_colors[0], spec.floor_colors[1])
    floor_color = floor_color * (0.55 + 0.45 * light[2])
    color = np.where(on_floor[..., None], floor_color, color)
    depth = np.where(on_floor, t_floor, depth)
    color, depth, labels = _shade_objects(spec.objects, light, origins, directions, color, depth)
    return np.clip(color, 0, 1), labels, depth


def _save_json(data: dict, path: Path) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2)))


def make_scene(
    output: Path, num_views: int = 40, size: int = 96, seed: int = 0, spec: SceneSpec = SceneSpec(),
    fov_degrees: float = 50.0, points: int = 0,
) -> Path:
    """Render the scene into `output` (transforms.json, images/, masks/, masks.json); returns `output`. With
    `points`, also a seed point cloud of that many surface points the cameras see (sparse_pc.ply, as
    ns-process-data writes from COLMAP's points; splatfacto starts from it)."""
    output = Path(output)
    # Poses and intrinsics are rounded before use: their last bits differ between CPUs (libm), the rounded values
    # don't, so transforms.json is the same file on every machine and the images are rendered from what it says.
    focal = round(size / 2 / math.tan(math.radians(fov_degrees) / 2), JSON_DECIMALS)
    frames, mask_frames, cloud = [], [], []
    for i, c2w in enumerate(camera_ring(num_views, seed)):
        c2w = np.round(c2w, JSON_DECIMALS) + 0.0  # + 0.0: no "-0.0" in the file
        rgb, labels = render_view(spec, c2w, size, size, focal)
        if points:
            cloud.append(surface_points(spec, c2w, size, size, focal))
        image_path, mask_path = f"images/frame_{i:05d}.png", f"masks/frame_{i:05d}.png"
        atomic_save_image(output / image_path, rgb)
        atomic_save_image(output / mask_path, labels)
        frames.append({"file_path": image_path, "transform_matrix": c2w.tolist()})
        mask_frames.append({"file_path": image_path, "object_mask": mask_path})
    transforms = {
        "camera_model": "OPENCV",
        "fl_x": focal, "fl_y": focal, "cx": size / 2, "cy": size / 2, "w": size, "h": size,
        "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
        "frames": frames,
    }
    if points:
        xyz, rgb = (np.concatenate(parts) for parts in zip(*cloud))
        chosen = np.random.default_rng(seed).choice(len(xyz), size=min(points, len(xyz)), replace=False)
        write_point_cloud(output / "sparse_pc.ply", xyz[chosen], rgb[chosen])
        transforms["ply_file_path"] = "sparse_pc.ply"
    objects = {str(k): {"name": obj.name, "color": list(obj.color)} for k, obj in enumerate(spec.objects, start=1)}
    _save_json(transforms, output / "transforms.json")
    _save_json({"seed": seed, "objects": objects, "frames": mask_frames}, output / MASKS_FILE)
    return output


def with_objects(spec: SceneSpec, *objects) -> SceneSpec:
    """The scene with `objects` added (labelled after the scene's own, in order): what an instruction that adds
    something should give, for oracles and ground truth."""
    return replace(spec, objects=(*spec.objects, *objects))


def render_scene_views(scene: Path, spec: SceneSpec, supersample: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """`spec` rendered from every camera of a make_scene folder (its transforms.json, frame order): RGB [N, H, W, 3]
    in [0, 1] and labels [N, H, W] uint8, as make_scene renders its photos."""
    transforms = json.loads((Path(scene) / "transforms.json").read_text())
    width, height, focal = int(transforms["w"]), int(transforms["h"]), float(transforms["fl_x"])
    views = [render_view(spec, np.array(frame["transform_matrix"]), width, height, focal, supersample)
             for frame in transforms["frames"]]
    return np.stack([rgb for rgb, _ in views]), np.stack([labels for _, labels in views])


# ------------------------------------------------------------------------------------ a capture of photos
# A user's capture has no poses: JPEG photos of a textured tabletop, for COLMAP to register (ns-process-data). The
# floor and a back wall carry multi-scale grey noise (features for SIFT); the red ball and a yellow box stand on it.
CAPTURE_OBJECTS = (Sphere("red_ball", (-0.35, -0.1, 0.28), 0.28, (0.85, 0.12, 0.1)),
                   Box("yellow_box", (0.38, 0.18, 0.22), (0.2, 0.2, 0.22), (0.95, 0.8, 0.1)))
WALL_Y, TABLE_HALF = 1.8, 2.5


def noise_texture(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """Multi-octave value noise in grey (no hue a colour key would take for an object), [size, size] in [0, 1]."""
    texture = np.zeros((size, size))
    for cells, amplitude in ((8, 0.5), (32, 0.3), (128, 0.25), (256, 0.2)):
        grid = rng.uniform(-1, 1, (cells + 1, cells + 1))
        x = np.linspace(0, cells, size, endpoint=False)
        i, f = x.astype(int), x - x.astype(int)
        texture += amplitude * (grid[i][:, i] * np.outer(1 - f, 1 - f) + grid[i + 1][:, i] * np.outer(f, 1 - f)
                                + grid[i][:, i + 1] * np.outer(1 - f, f) + grid[i + 1][:, i + 1] * np.outer(f, f))
    return np.clip(0.5 + 0.35 * texture / np.abs(texture).max(), 0, 1)


def _lookup(texture: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Nearest texel of u, v in [0, 1] (clamped). -> [...]"""
    last = texture.shape[0] - 1
    return texture[np.clip((v * last).astype(int), 0, last), np.clip((u * last).astype(int), 0, last)]


def _textured_planes(origins, directions, floor, wall):
    """The table (z = 0) and the back wall (y = WALL_Y), textured: colour [..., 3] and distance [...] (inf: sky)."""
    color = _sky(directions)
    depth = np.full(directions.shape[:-1], np.inf)
    for axis, offset, texture, tint in ((2, 0.0, floor, (0.9, 0.85, 0.75)), (1, WALL_Y, wall, (0.7, 0.72, 0.78))):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (offset - origins[..., axis]) / directions[..., axis]
        point = origins + directions * np.where(np.isfinite(t), t, 0)[..., None]
        inside = (np.abs(point[..., 0]) < TABLE_HALF) & ((point[..., 1] if axis == 2 else point[..., 2]) < TABLE_HALF)
        inside &= (np.abs(point[..., 1]) < TABLE_HALF) if axis == 2 else (point[..., 2] > 0)
        u = (point[..., 0] + TABLE_HALF) / (2 * TABLE_HALF)
        v = (point[..., 1] + TABLE_HALF) / (2 * TABLE_HALF) if axis == 2 else point[..., 2] / TABLE_HALF
        hit = (t > 1e-6) & inside & (t < depth)
        color = np.where(hit[..., None], _lookup(texture, u, v)[..., None] * np.array(tint), color)
        depth = np.where(hit, t, depth)
    return color, depth


def render_photo(c2w: np.ndarray, width: int, height: int, focal: float, floor, wall, supersample: int = 2):
    """One photo of the capture scene: RGB [H, W, 3] in [0, 1], supersampled."""
    origins, directions = camera_rays(c2w, width, height, focal, supersample)
    color, depth = _textured_planes(origins, directions, floor, wall)
    color, _, _ = _shade_objects(CAPTURE_OBJECTS, _unit(SceneSpec.light_direction), origins, directions, color, depth)
    return np.clip(color, 0, 1).reshape(height, supersample, width, supersample, 3).mean(axis=(1, 3))


def make_photo_capture(output: Path, count: int = 16, width: int = 240, height: int = 180, seed: int = 0,
                       rotated: tuple = (), quality: int = 92) -> Path:
    """`count` JPEG photos of the capture scene, no poses (as a phone leaves them): cameras on a 120° arc facing
    the back wall, at a 60° horizontal field of view. Photos in `rotated` are stored turned a quarter with an EXIF
    orientation tag (6: "rotate 90° clockwise to show"), as a phone held upright writes them. -> `output`"""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    floor, wall = noise_texture(rng), noise_texture(rng)
    focal = width / 2 / math.tan(math.radians(60) / 2)
    for i in range(count):
        azimuth = math.radians(-150 + 120 * i / max(count - 1, 1))
        elevation = math.radians(30 + 8 * math.sin(2 * math.pi * i / count))
        position = 2.6 * np.array([math.cos(azimuth) * math.cos(elevation), math.sin(azimuth) * math.cos(elevation),
                                   math.sin(elevation)])
        rgb = render_photo(look_at(position, np.array([0.0, 0.0, 0.15])), width, height, focal, floor, wall)
        image = Image.fromarray((rgb * 255 + 0.5).astype(np.uint8))
        exif = Image.Exif()
        if i in rotated:
            image, exif[0x0112] = image.transpose(Image.Transpose.ROTATE_90), 6
        path = output / f"IMG_{i:04d}.jpg"
        atomic_write(path, lambda tmp, image=image, exif=exif: image.save(tmp, format="JPEG", quality=quality,
                                                                          exif=exif))
    return output


def load_object_masks(scene: Path) -> dict[str, np.ndarray]:
    """Ground-truth label maps by image path (relative to the scene), from masks.json."""
    scene = Path(scene)
    index = json.loads((scene / MASKS_FILE).read_text())
    return {frame["file_path"]: np.array(Image.open(scene / frame["object_mask"])) for frame in index["frames"]}
