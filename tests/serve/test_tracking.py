from faceray.serve.tracking import FaceTracker, iou


def face(box, happy):
    return {
        "box": box,
        "emotion": {
            "label": "happy" if happy > 0.5 else "sad",
            "score": max(happy, 1 - happy),
            "scores": {"happy": happy, "sad": 1 - happy},
        },
    }


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert abs(iou((0, 0, 10, 10), (5, 0, 10, 10)) - 1 / 3) < 1e-9


def test_faces_keep_their_own_track_and_smoothing():
    tracker = FaceTracker(smoothing=0.5)
    first = tracker.update([face([0, 0, 50, 50], 0.9), face([200, 0, 50, 50], 0.1)])
    ids = [track.track_id for track in first]
    second = tracker.update([face([205, 2, 50, 50], 0.1), face([3, 1, 50, 50], 0.1)])
    assert [track.track_id for track in second] == [ids[1], ids[0]]
    left = next(track for track in second if track.track_id == ids[0]).as_face()
    # one sad frame after a happy one: smoothed 0.5*0.9 + 0.5*0.1 = 0.5 happy, not flipped to 0.1
    assert abs(left["emotion"]["scores"]["happy"] - 0.5) < 1e-9
    right = next(track for track in second if track.track_id == ids[1]).as_face()
    assert right["emotion"]["label"] == "sad" and right["emotion"]["scores"]["happy"] < 0.11


def test_lost_faces_expire_and_new_faces_get_new_ids():
    tracker = FaceTracker(max_missed=1)
    [track] = tracker.update([face([0, 0, 50, 50], 0.9)])
    tracker.update([])
    tracker.update([])
    [again] = tracker.update([face([0, 0, 50, 50], 0.9)])
    assert again.track_id != track.track_id
