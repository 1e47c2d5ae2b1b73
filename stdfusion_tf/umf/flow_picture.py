"""Upstream's picture of a registration flow (``flow2rgb``)."""

import numpy as np


def flow_to_rgb(flow):
    """Upstream's ``flow2rgb(flow, max_value=None)`` picture, as the RGB
    image that ``cv2.imwrite`` of its array shows: ``[2, H, W]`` flow ->
    uint8 [H, W, 3].

    Upstream builds planes (1 + fy, 1 - (fy + fx)/2, 1 + fx) of the flow
    normalised by its largest magnitude, clips to [0, 1], scales by 255 and
    truncates (``astype(uint8)``); cv2 writes plane 0 as blue, so the picture
    is those planes in reverse order."""
    flow = np.asarray(flow, np.float32)
    peak = np.abs(flow).max()
    norm = flow / peak if peak > 0 else flow  # upstream divides by 0 -> nan
    planes = np.ones((3,) + flow.shape[1:], np.float32)
    planes[0] += norm[0]
    planes[1] -= 0.5 * (norm[0] + norm[1])
    planes[2] += norm[1]
    planes = (planes.clip(0, 1) * 255).astype(np.uint8)
    return np.ascontiguousarray(planes[::-1].transpose(1, 2, 0))
