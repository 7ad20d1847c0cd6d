#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: edgeml.greengrass contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: greengrass_v2_component
short_description: Make sure an AWS IoT Greengrass V2 component version exists for a recipe
version_added: 0.2.0
description:
  - Creates a private Greengrass V2 component version from a recipe (C(CreateComponentVersion) with an
    inline recipe), only when no version of the component already has the same content.
  - The content is the recipe without its C(ComponentVersion), plus the S3 ETag and size of every C(s3://)
    artifact it names. Its SHA-256 is stored on the version as the tag C(edgeml:recipe-sha256), so a re-run
    recognises its own versions whatever form the service returns the recipe in. A version made elsewhere,
    without that tag, is compared by its recipe (the service's C(Digest) and C(Algorithm) fields left out).
  - AWS never changes a component version. With an explicit version (O(version) or the recipe's
    C(ComponentVersion)) that already exists with other content the module fails and writes nothing.
    With O(version=auto) new content gets the next patch version above the highest existing one (or the
    recipe's C(ComponentVersion), or C(1.0.0), for the first one), and content seen before reuses its version.
  - The module does not upload artifacts; upload them first with M(amazon.aws.s3_object) and name their
    C(s3://) URIs in the recipe. A named artifact that does not exist is an error before anything is written.
  - O(state=absent) deletes one version, or every version of the component.
author:
  - edgeml.greengrass contributors (@edgeml)
options:
  recipe:
    description:
      - The component recipe (format C(2020-01-25)) as a dict, or as JSON or YAML text.
      - Required with O(state=present). With O(state=absent) it only supplies the name and version.
    type: raw
  name:
    description:
      - Component name. Defaults to the recipe's C(ComponentName); when both are given they must match.
      - Required with O(state=absent) when no O(recipe) is given.
    type: str
  version:
    description:
      - V(auto) derives the version from the content as described above; a semantic version
        C(major.minor.patch) overrides the recipe's C(ComponentVersion).
      - Defaults to the recipe's C(ComponentVersion).
      - With O(state=absent), V(auto) (or no version and no recipe) deletes every version of the component.
    type: str
  tags:
    description:
      - Tags for a version this module creates. Tags are not changed on existing versions.
    type: dict
  check_artifacts:
    description:
      - Read the ETag and size of every C(s3://) artifact (C(s3:HeadObject)) so that a changed artifact makes a
        new version and a missing one fails before anything is written.
      - Without it only the recipe decides, and AWS reports a missing artifact as a C(FAILED) component.
    type: bool
    default: true
  state:
    description: Whether the component version should exist.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
notes:
  - Supports check mode and diff mode. In check mode a version that would be created has no ARN.
  - A new version that AWS marks C(FAILED) (for example an artifact it cannot read) is deleted again and the
    module fails with the service's errors, so nothing half-made stays behind.
"""

EXAMPLES = r"""
- name: Upload the detector's code artifact
  amazon.aws.s3_object:
    bucket: edgeml-artifacts
    object: components/detector/detector.zip
    src: build/detector.zip
    mode: put

- name: A new component version whenever the recipe or the artifact changes
  edgeml.greengrass.greengrass_v2_component:
    version: auto
    recipe:
      RecipeFormatVersion: "2020-01-25"
      ComponentName: com.edgeml.Detector
      ComponentVersion: "1.0.0"
      ComponentDescription: MXNet SSD object detector
      ComponentPublisher: edgeml
      Manifests:
        - Platform:
            os: linux
          Artifacts:
            - URI: s3://edgeml-artifacts/components/detector/detector.zip
              Unarchive: ZIP
          Lifecycle:
            Run: python3 -u {artifacts:decompressedPath}/detector/main.py
  register: detector_component

- name: A recipe kept as a YAML file, with the version it states
  edgeml.greengrass.greengrass_v2_component:
    recipe: "{{ lookup('ansible.builtin.file', 'recipes/com.edgeml.Camera.yaml') }}"

- name: Remove every version of a component
  edgeml.greengrass.greengrass_v2_component:
    name: com.edgeml.Detector
    state: absent
"""

RETURN = r"""
component:
  description: The component version asked for (created, found, or deleted); null when nothing matched.
  returned: always
  type: dict
  contains:
    arn:
      description: Component version ARN (null in check mode for a version not created yet).
      type: str
    name:
      description: Component name.
      type: str
    version:
      description: Component version.
      type: str
    recipe_sha256:
      description: The content hash described above.
      type: str
    state:
      description: C(componentState) (C(DEPLOYABLE), C(FAILED), ...).
      type: str
    errors:
      description: Per-artifact errors the service reported.
      type: dict
versions:
  description: The component's versions after the run, newest first.
  returned: always
  type: list
  elements: str
deleted:
  description: Versions deleted (or that would be, in check mode).
  returned: with O(state=absent)
  type: list
  elements: str
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule  # noqa: E402
from ansible_collections.edgeml.greengrass.plugins.module_utils._retries import AWSCallError, fail_aws_call  # noqa: E402

from ansible_collections.edgeml.greengrass.plugins.module_utils import _greengrass_v2 as gg2  # noqa: E402


def _sorted_versions(versions):
    return sorted(versions, key=gg2.version_key, reverse=True)


class ComponentRun:
    def __init__(self, module, recipe, name):
        self.module = module
        self.params = module.params
        self.recipe = recipe
        self.name = name
        self.client = module.client("greengrassv2")
        self._s3 = None

    def s3(self):
        if self._s3 is None:
            self._s3 = self.module.client("s3")
        return self._s3

    def existing(self):
        """(component ARN or None, {version: version ARN})."""
        component = gg2.find_component(self.client, self.name)
        if not component:
            return None, {}
        versions = gg2.list_component_versions(self.client, component["arn"])
        return component["arn"], dict((v["componentVersion"], v["arn"]) for v in versions)

    def fingerprints(self):
        if not self.params["check_artifacts"]:
            return {}
        found, missing = {}, []
        for uri in gg2.recipe_artifact_uris(self.recipe):
            if not uri.startswith("s3://"):
                continue
            try:
                fingerprint = gg2.head_s3_object(self.s3(), uri)
            except AWSCallError as error:
                fail_aws_call(
                    self.module,
                    error,
                    "could not read recipe artifact %s (s3:HeadObject); grant it, or set check_artifacts: false "
                    "to let only the recipe decide" % uri,
                )
            if fingerprint is None:
                missing.append(uri)
            found[uri] = fingerprint
        if missing:
            self.module.fail_json(
                msg="recipe artifacts do not exist in S3: %s; upload them first (amazon.aws.s3_object) or fix the URIs"
                % ", ".join(missing)
            )
        return found

    def version_hash(self, version_arn, fingerprints):
        described = gg2.describe_component(self.client, version_arn)
        tagged = ((described or {}).get("tags") or {}).get(gg2.HASH_TAG)
        if tagged:
            return tagged
        # Made elsewhere: compare by its recipe, with today's artifacts.
        return gg2.content_hash(gg2.get_component_recipe(self.client, version_arn), fingerprints)

    def present(self):
        fingerprints = self.fingerprints()
        desired_hash = gg2.content_hash(self.recipe, fingerprints)
        _arn, versions = self.existing()
        hashes = dict((version, self.version_hash(arn, fingerprints)) for version, arn in versions.items())
        requested = self.params["version"] or self.recipe.get("ComponentVersion")
        action, version = gg2.plan_component(desired_hash, requested, hashes, self.recipe.get("ComponentVersion"))
        before = {"name": self.name, "versions": dict((v, hashes[v]) for v in _sorted_versions(hashes))}

        if action == "conflict":
            self.module.fail_json(
                msg="component %s version %s already exists with other content (recipe_sha256 %s, asked for %s); "
                "AWS never changes a component version: raise the version or set version: auto"
                % (self.name, version, hashes[version], desired_hash)
            )
        if action == "none":
            described = gg2.describe_component(self.client, versions[version])
            return dict(
                changed=False,
                component=gg2.component_view(described, desired_hash),
                versions=_sorted_versions(versions),
                diff={"before": before, "after": before},
            )

        after_versions = dict(before["versions"])
        after_versions[version] = desired_hash
        diff = {"before": before, "after": {"name": self.name, "versions": after_versions}}
        all_versions = _sorted_versions(list(versions) + [version])
        recipe = dict(self.recipe, ComponentVersion=version)
        if self.module.check_mode:
            predicted = {
                "arn": None,
                "name": self.name,
                "version": version,
                "recipe_sha256": desired_hash,
                "state": None,
                "errors": {},
            }
            return dict(changed=True, component=predicted, versions=all_versions, diff=diff)

        tags = dict(self.params["tags"] or {})
        tags[gg2.HASH_TAG] = desired_hash
        created = gg2.create_component_version(self.client, recipe, tags)
        described = gg2.describe_component(self.client, created["arn"]) or created
        view = gg2.component_view(described, desired_hash)
        if view["state"] == "FAILED":
            gg2.delete_component(self.client, created["arn"])
            self.module.fail_json(
                msg="AWS marked component %s version %s FAILED (%s: %s); the version was deleted again"
                % (self.name, version, view["status_message"], view["errors"]),
                component=view,
            )
        return dict(changed=True, component=view, versions=all_versions, diff=diff)

    def absent(self):
        _arn, versions = self.existing()
        requested = self.params["version"]
        if requested is None and self.recipe is not None:
            requested = self.recipe.get("ComponentVersion")
        if requested in (None, "auto"):
            doomed = _sorted_versions(versions)
        else:
            doomed = [requested] if requested in versions else []
        remaining = _sorted_versions(set(versions) - set(doomed))
        diff = {
            "before": {"name": self.name, "versions": _sorted_versions(versions)},
            "after": {"name": self.name, "versions": remaining},
        }
        component = None
        if doomed and requested not in (None, "auto"):
            component = gg2.component_view(gg2.describe_component(self.client, versions[requested]))
        if not doomed or self.module.check_mode:
            return dict(changed=bool(doomed), component=component, versions=remaining, deleted=doomed, diff=diff)
        for version in doomed:
            gg2.delete_component(self.client, versions[version])
        return dict(changed=True, component=component, versions=remaining, deleted=doomed, diff=diff)


def validated_inputs(module):
    """(recipe or None, component name); fails naming the input before any AWS call."""
    params = module.params
    problems = []
    recipe = None
    if params["recipe"] is not None:
        try:
            recipe = gg2.parse_recipe(params["recipe"])
        except gg2.GreengrassV2InputError as error:
            module.fail_json(msg="Invalid greengrass_v2_component input: %s" % error)
        if params["state"] == "present":
            problems.extend(gg2.validate_recipe(recipe, params["version"]))
    elif params["state"] == "present":
        problems.append("recipe is required with state: present")
    if params["state"] == "absent" and params["version"] not in (None, "auto"):
        if not gg2.VERSION_RE.match(params["version"]):
            problems.append(
                "version must be 'auto' or a semantic version major.minor.patch, got %r" % params["version"]
            )
    name = params["name"]
    recipe_name = (recipe or {}).get("ComponentName")
    if name is not None and recipe_name is not None and name != recipe_name:
        problems.append("name %r differs from the recipe's ComponentName %r" % (name, recipe_name))
    name = name or recipe_name
    if not name:
        problems.append("name (or a recipe with ComponentName) is required")
    elif not gg2.COMPONENT_NAME_RE.match(str(name)):
        problems.append("name must be 1-128 characters from [A-Za-z0-9._-], got %r" % (name,))
    for key in params["tags"] or {}:
        if key.startswith("aws:") or key == gg2.HASH_TAG:
            problems.append("tags: %r is reserved" % key)
    if problems:
        module.fail_json(msg="Invalid greengrass_v2_component input: %s" % "; ".join(problems))
    return recipe, str(name)


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            recipe=dict(type="raw"),
            name=dict(type="str"),
            version=dict(type="str"),
            tags=dict(type="dict"),
            check_artifacts=dict(type="bool", default=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    recipe, name = validated_inputs(module)
    run = ComponentRun(module, recipe, name)
    try:
        result = run.present() if module.params["state"] == "present" else run.absent()
    except AWSCallError as error:
        fail_aws_call(module, error, "Greengrass V2 component call failed for %s" % name)

    module.exit_json(**result)


if __name__ == "__main__":
    main()
