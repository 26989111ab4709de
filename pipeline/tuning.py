"""The temporal method's tuning constants, in one place. Each says what it measures; the figures
behind the values come from `make bench-temporal` unless a comment names another benchmark.
Colour differences are mean RGB in [0, 1], grey ones in [0, 1], blurs Gaussian sigmas in pixels.
"""

from __future__ import annotations

# What changes slower across the image than this is light (a shadow, the camera's exposure), not
# content: no motion explains it, and held or restored pixels follow it.
LIGHT_BLUR = 6.0
# Confidence masks are blurred slightly, as artistic-videos does.
MASK_BLUR = 1.0

# A still camera (temporal.camera_still, temporal.zero_where_unmoved); the margin also serves a
# moving camera's motion (temporal.follow_camera).
STILL_BLUR = 2.0  # neighbourhood over which staying put and the flow's motion are compared
# how much worse than the flow staying put (or the camera's motion) may match and still be chosen
STILL_MARGIN = 1.0 / 255
STILL_CAMERA = 0.25  # px: a median displacement under this is a still camera
# A larger median is a moving camera (whose flat areas move with it) where shifting the whole
# frame by it explains this share of the frames' difference.
STILL_SHIFT_GAIN = 0.1
# Neighbouring frames: a shift that makes this share of the pixels it changes match worse is a
# large moving object's, not the camera's.
STILL_WORSE = 0.1

# A fast pan (temporal.camera_shift): DIS also starts from the whole picture's shift where phase
# correlation finds one of at least CAMERA_PRIOR_SHIFT px (DIS's pyramid alone holds to about 20
# px at 256 px) with a peak of at least CAMERA_PRIOR_RESPONSE (0.5-0.96 on the synthetic pans of
# make bench-motion; 0.1 or less where the shift is out of its reach).
CAMERA_PRIOR_SHIFT = 8.0
CAMERA_PRIOR_RESPONSE = 0.2
# A moving camera (temporal.follow_camera): the camera's own motion is taken where it matches the
# frames within STILL_MARGIN of DIS's flow and at most CAMERA_FIT badly (grey, blurred; sensor
# noise alone gives 1.4-1.8/255 on make bench-motion's clips, an occlusion 6-30/255, capped here at
# LIGHT_OUTLIER): where neither matches, DIS's flow stays, and the forward-backward check finds an
# occlusion even where DIS lost the object. Beside an object moving otherwise, a pixel's difference
# counts up to LIGHT_OUTLIER and only smaller ones set the light, and each pixel takes the best
# match within MOTION_EDGE px: DIS smears a crossing object's motion up to 9 px into the ground
# around it, and the object's mismatch, blurred over its edge, would keep the camera's motion from
# winning there.
CAMERA_FIT = 5.0 / 255
LIGHT_OUTLIER = 0.05  # about 13/255
MOTION_EDGE = 1
# The camera's motion (temporal.camera_motion) is refitted to the flow of the more textured half
# of the points its fit holds to (the frame's gradient blurred over TEXTURE_BLUR), within
# CAMERA_FIT_PX, where there are at least MIN_FIT_POINTS: fitted within 1 px to every point, a
# noisy pan's fit was 0.15-0.23 px off, and 0.02-0.06 px refitted.
CAMERA_FIT_PX = 0.5
TEXTURE_BLUR = 4.0
MIN_FIT_POINTS = 8

# Looks alike (temporal.looks_alike): the photo check of a carried pixel.
PHOTO_CHANGE = 0.1  # an input pixel the flow brings from the earlier frame differing more
PHOTO_BLUR = 1.0  # both inputs are blurred first: a resampled sharp edge differs by itself

# Looks alike: the hold reference of --hold-still.
HOLD_BLUR = 1.5  # inputs are compared blurred (compression noise)
HOLD_SETTLE = 20  # frames a pixel stays free once its input is still again (after something passed)
HOLD_LIGHT_LIMIT = 0.1  # a larger change of light (a lamp switched on) lets the pixels go

# Looks alike: pixels restored from the shot's first result (--restore-still).
RESTORE_CHANGE = 0.03  # a pixel's input looks as in the shot's first frame
# The camera's exposure (the frame's median change of light; car-detection's moves by 0.12 as
# bright cars pass) is followed up to this.
RESTORE_LIGHT_LIMIT = 0.3

# The optimizer of a later frame.
# --catch-up: one more budget of evaluations per this share of a later frame's pixels the warm start
# cannot vouch for (a fast pan's entering strip, a disocclusion); make bench-motion
DAMAGE_SHARE = 0.02
# --paint-holes: a region the warm start cannot vouch for is painted on its own crop when it is this
# share of the frame's shorter side across everywhere (23 px at 256x144: a 24- or 36-px-a-frame
# pan's strip; painted, a 12- and a 20-px one flickered 1.5-2x as much), with this share more
# on each side for context, and no crop over LARGEST_HOLE of the frame (make bench-motion)
HOLE_WIDTH = 0.15
HOLE_MARGIN = 1 / 18
LARGEST_HOLE = 0.5
CARRIED_PAIRS = 5  # L-BFGS history pairs taken from frame t-1 (older ones describe older frames)
# A later frame's state (its carried curvature, 250 MB at 1080p) is written at a checkpoint when
# this share of the time since the last one pays for the last one's writing (carried_state); a
# resumed run makes the frames after the last checkpoint again.
STATE_WRITE_SHARE = 0.02
PASS_BLEND = 0.5  # later passes: share of the neighbour's carried result in a frame's start
