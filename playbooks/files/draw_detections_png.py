"""Draw a detector answer's detections on the image it was about and save it as PNG, on the device.

    python draw_detections_png.py DETECTOR_DIR IMAGE ANSWER_JSON ANNOTATED_PNG

DETECTOR_DIR holds the collection's object_detector.py (the detector's own drawing code); run it with the
device's inference runtime (OpenCV). The answer is what the detector published over MQTT: the boxes are drawn
exactly as received, nothing is inferred again.
"""

import json
import sys


def main(detector_dir, image_path, answer_json, annotated_png):
    sys.path.insert(0, detector_dir)
    from object_detector import write_annotated_png

    with open(answer_json) as handle:
        answer = json.load(handle)
    if not isinstance(answer, dict) or not isinstance(answer.get("detections"), list):
        raise SystemExit("{}: not a detector answer with a detections list".format(answer_json))
    write_annotated_png(image_path, answer, annotated_png)
    print(json.dumps({"annotated_png": annotated_png, "detections": len(answer["detections"])}))


if __name__ == "__main__":
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    main(*sys.argv[1:5])
