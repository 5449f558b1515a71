"""OBJ meshes with vertex normals for the three shapes, so that TinyRenderer shades them smoothly.

PyBullet's primitive spheres and cylinders are coarsely tessellated and their caps shade
wrongly; meshes given as in-memory arrays leak memory per video. OBJ files written once and
loaded by name do neither. All meshes have unit size (radius 1, half-extent 1) and are
scaled when loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_SEGMENTS = 40  # around the sphere and cylinder
_RINGS = 20  # from pole to pole of the sphere


def _obj(vertices: list, normals: list, faces: list[tuple[int, int, int]]) -> str:
    """OBJ text; face indices are 0-based into both vertices and normals (one normal per vertex)."""
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"vn {x:.6f} {y:.6f} {z:.6f}" for x, y, z in normals]
    lines += ["f " + " ".join(f"{i + 1}//{i + 1}" for i in face) for face in faces]
    return "\n".join(lines) + "\n"


def cube_obj() -> str:
    """Unit cube (half-extent 1), flat faces: four own vertices per face."""
    vertices, normals, faces = [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            normal = np.zeros(3)
            normal[axis] = sign
            u, v = np.eye(3)[(axis + 1) % 3], np.eye(3)[(axis + 2) % 3]
            if sign < 0:
                u, v = v, u  # keep the winding counter-clockwise seen from outside
            base = len(vertices)
            for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                vertices.append(tuple(normal + a * u + b * v))
                normals.append(tuple(normal))
            faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    return _obj(vertices, normals, faces)


def sphere_obj() -> str:
    """Unit sphere, UV-tessellated, normals = positions."""
    vertices = []
    for ring in range(_RINGS + 1):
        theta = np.pi * ring / _RINGS
        for seg in range(_SEGMENTS + 1):
            phi = 2 * np.pi * seg / _SEGMENTS
            vertices.append((np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)))
    faces = []
    row = _SEGMENTS + 1
    for ring in range(_RINGS):
        for seg in range(_SEGMENTS):
            a, b = ring * row + seg, (ring + 1) * row + seg
            if ring > 0:
                faces.append((a, b, a + 1))
            if ring < _RINGS - 1:
                faces.append((a + 1, b, b + 1))
    return _obj(vertices, vertices, faces)


def cylinder_obj() -> str:
    """Unit cylinder (radius 1, z from -1 to 1): smooth side, flat caps with their own vertices."""
    vertices, normals, faces = [], [], []
    angles = 2 * np.pi * np.arange(_SEGMENTS + 1) / _SEGMENTS
    for z in (-1.0, 1.0):  # side rings
        for phi in angles:
            vertices.append((np.cos(phi), np.sin(phi), z))
            normals.append((np.cos(phi), np.sin(phi), 0.0))
    row = _SEGMENTS + 1
    for seg in range(_SEGMENTS):
        a, b = seg, row + seg
        faces += [(a, a + 1, b + 1), (a, b + 1, b)]
    for z in (-1.0, 1.0):  # caps: a center and a ring each
        center = len(vertices)
        vertices.append((0.0, 0.0, z))
        normals.append((0.0, 0.0, z))
        for phi in angles:
            vertices.append((np.cos(phi), np.sin(phi), z))
            normals.append((0.0, 0.0, z))
        for seg in range(_SEGMENTS):
            i, j = center + 1 + seg, center + 2 + seg
            faces.append((center, i, j) if z > 0 else (center, j, i))
    return _obj(vertices, normals, faces)


MESHES = {"cube": cube_obj, "sphere": sphere_obj, "cylinder": cylinder_obj}


def write_meshes(folder: str | Path) -> dict[str, Path]:
    """Write the three OBJ files into `folder` (skipping existing ones); shape name -> path.

    `folder` is one generation run's own, written before its workers start and removed when
    it ends, so the files are written in place; a failed write raises the `OSError` itself,
    for the caller to name its output.
    """
    folder = Path(folder)
    paths = {}
    for shape, make in MESHES.items():
        path = folder / f"{shape}.obj"
        if not path.is_file():
            path.write_text(make())
        paths[shape] = path
    return paths
