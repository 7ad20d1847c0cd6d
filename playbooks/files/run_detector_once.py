"""Run the deployed detector Lambda once on this device, the way a Greengrass V1 core would call it.

    python run_detector_once.py PACKAGE_DIR IMAGE RESULT_JSON ANNOTATED_PNG

PACKAGE_DIR is the unzipped Lambda package; the function's environment (MODEL_PATH, labels,
threshold, topics) comes from this process's environment, as the core sets it. The core's
publisher is replaced by one that records what the function publishes: greengrasssdk's iot-data
client only works inside a running core.
"""

import json
import sys


def main(package_dir, image_path, result_json, annotated_png):
    sys.path.insert(0, package_dir)
    import greengrass_object_detector
    from object_detector import write_annotated_png

    published = []
    greengrass_object_detector.set_publisher(lambda topic, payload: published.append((topic, payload)))
    returned = greengrass_object_detector.function_handler({"image_path": image_path}, None)
    if not published:
        raise SystemExit("the detector published nothing")
    topic, payload = published[0]
    result = {"topic": topic, "payload": json.loads(payload.decode("utf-8")), "returned": returned}
    with open(result_json, "w") as handle:
        json.dump(result, handle, indent=2, sort_keys=True)
    if "error" in result["payload"]:
        raise SystemExit("the detector reported an error: {}".format(result["payload"]["error"]))
    write_annotated_png(image_path, result["payload"], annotated_png)
    print(json.dumps({"topic": topic, "detections": len(result["payload"].get("detections", []))}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
