# -*- coding: utf-8 -*-

# Copyright (c) 2026 edgeml.greengrass maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: aws_iot
short_description: Edge devices from AWS IoT thing groups and AWS IoT Greengrass V2 core devices
version_added: 0.1.0
description:
  - Makes one host per AWS IoT thing, named after the thing (the inventory hostname this collection's roles use as the
    thing name), from the things in I(thing_groups) and their child groups, or from every Greengrass V2 core device of
    the regions when no thing group is given.
  - Each host gets the thing's ARN, type, attributes and thing groups, and, for a Greengrass V2 core device, its
    status (C(HEALTHY)/C(UNHEALTHY)), platform, architecture, runtime and nucleus version.
  - "Groups made for every host: I(parent_group) (C(edge_devices), the group C(playbooks/site.yml) provisions),
    C(thing_group_<name>) for each thing group it is in, C(greengrass_v2) or C(greengrass_no_core_device), and
    C(greengrass_healthy) or C(greengrass_unhealthy) for core devices."
  - The device's address comes from the thing attribute I(address_attribute) (as C(ansible_host)); a thing without it
    is reached by its name.
  - Uses a YAML configuration file that ends with C(aws_iot.yml) or C(aws_iot.yaml).
  - Calls AWS IoT C(ListThingGroups), C(ListThingsInThingGroup), C(ListThings), C(ListThingGroupsForThing) and AWS IoT
    Greengrass V2 C(ListCoreDevices), C(GetCoreDevice); throttled and failed calls are retried as this collection's
    modules retry them.
options:
  plugin:
    description: The name of this plugin; it should always be set to C(edgeml.greengrass.aws_iot).
    required: true
    choices: [edgeml.greengrass.aws_iot]
    type: str
  regions:
    description:
      - The AWS regions to read. Empty means the one region of I(region) (or C(AWS_REGION)).
    type: list
    elements: str
    default: []
  thing_groups:
    description:
      - Thing groups whose things (in the group or in any of its child groups) become hosts.
      - Empty means every AWS IoT Greengrass V2 core device of the regions.
    type: list
    elements: str
    default: []
  statuses:
    description:
      - Greengrass V2 core device statuses to keep. Things that are no core device are kept unless
        I(include_things_without_core_device=false).
    type: list
    elements: str
    choices: [HEALTHY, UNHEALTHY]
    default: [HEALTHY, UNHEALTHY]
  include_things_without_core_device:
    description:
      - Whether things of I(thing_groups) that are no Greengrass V2 core device (Greengrass V1 cores, devices not
        provisioned yet) become hosts.
    type: bool
    default: true
  address_attribute:
    description:
      - The thing attribute that holds the device's address (IP address or DNS name), set as C(ansible_host).
    type: str
    default: address
  filters:
    description:
      - Keeps only the hosts whose thing matches every filter, as C(amazon.aws.aws_ec2)'s C(tag:Name) filters do.
      - "Keys: C(thing_type) (the thing type name) and C(attribute:<name>) (a thing attribute); a value is one value
        or a list of values, any of which matches."
    type: dict
    default: {}
  parent_group:
    description:
      - A group every host of this source is put in. Empty for none.
    type: str
    default: edge_devices
extends_documentation_fragment:
  - inventory_cache
  - constructed
  - amazon.aws.boto3
  - amazon.aws.common.plugins
  - amazon.aws.region.plugins
  - amazon.aws.assume_role.plugins
author:
  - edgeml.greengrass contributors (@edgeml)
"""

EXAMPLES = r"""
# inventories/fleet.aws_iot.yml: every device of two thing groups, reached at the address in their "address" attribute.
plugin: edgeml.greengrass.aws_iot
regions: [eu-west-1]
thing_groups: [edgeml-detectors, edgeml-line-2]
keyed_groups:
  - key: greengrass_architecture
    prefix: arch
compose:
  ansible_user: iot_attributes.ssh_user | default('ubuntu')
  edgeml_gpu: iot_attributes.gpu | default('false') == 'true'

---

# Only the healthy Greengrass V2 core devices of the region, cached for an hour.
plugin: edgeml.greengrass.aws_iot
statuses: [HEALTHY]
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/edgeml-aws-iot-inventory
cache_timeout: 3600
"""

from ansible.errors import AnsibleError  # noqa: E402

from ansible_collections.amazon.aws.plugins.module_utils.exceptions import AnsibleAWSError  # noqa: E402
from ansible_collections.amazon.aws.plugins.plugin_utils.inventory import AWSInventoryBase  # noqa: E402
from ansible_collections.edgeml.greengrass.plugins.module_utils import _greengrass_v2 as gg2  # noqa: E402
from ansible_collections.edgeml.greengrass.plugins.module_utils import _iot as iot  # noqa: E402

try:
    import botocore
except ImportError:
    pass  # amazon.aws's require_aws_sdk() reports it

THING_GROUP_PREFIX = "thing_group_"


def thing_group_tree(client, thing_groups, region):
    """{group: its parent group or None} for the listed groups and all their descendants, walked level by level."""
    for group in thing_groups:
        if iot.describe_thing_group(client, group) is None:
            raise AnsibleError(f"aws_iot inventory: thing group {group!r} of `thing_groups` does not exist in {region}")
    parents, level = dict.fromkeys(thing_groups), list(thing_groups)
    while level:
        below = []
        for group in level:
            for child in iot.list_child_thing_groups(client, group):
                if child not in parents:
                    parents[child] = group
                    below.append(child)
        level = below
    return parents


def region_inventory(client, greengrass, thing_groups, region):
    """What this source knows of one region, as plain data (so that it can be cached):
    {"hosts": {thing name: host record}, "group_parents": {thing group: parent or None}}.

    A host record: the thing (name, ARN, type, attributes), the thing groups it is directly in (of those listed and
    their child groups; all of its groups when no group is listed) and its Greengrass V2 core device (or None).
    """
    core_devices = {device["coreDeviceThingName"]: device for device in gg2.list_core_devices(greengrass)}
    group_parents = thing_group_tree(client, thing_groups, region)
    if thing_groups:
        members = {}
        # ListThingsInThingGroup's `recursive` is left out on purpose: each group of the tree is listed, so each host
        # knows the groups it is directly in.
        for group in group_parents:
            for thing in iot.list_things_in_thing_group(client, group):
                members.setdefault(thing, []).append(group)
    else:
        members = dict.fromkeys(core_devices)

    things = {thing["thingName"]: thing for thing in iot.list_things(client)}
    hosts = {}
    for name in sorted(members):
        thing = things.get(name)
        if thing is None:  # deleted between the two lists
            continue
        groups = members[name]
        if groups is None:
            groups = iot.list_thing_groups_for_thing(client, name)
        core = None
        described = gg2.get_core_device(greengrass, name) if name in core_devices else None
        if described is not None:  # None also when it was removed between the list and the read
            core = {
                "status": described.get("status"),
                "platform": described.get("platform"),
                "architecture": described.get("architecture"),
                "runtime": described.get("runtime"),
                "core_version": described.get("coreVersion"),
                "last_status_update": _timestamp(described.get("lastStatusUpdateTimestamp")),
            }
        hosts[name] = {
            "region": region,
            "thing_name": name,
            "thing_arn": thing.get("thingArn"),
            "thing_type": thing.get("thingTypeName"),
            "attributes": dict(thing.get("attributes") or {}),
            "thing_groups": sorted(set(groups)),
            "core_device": core,
        }
    return {"hosts": hosts, "group_parents": group_parents}


def _timestamp(value):
    return value.isoformat() if hasattr(value, "isoformat") else value


def host_variables(record, address_attribute):
    """The host variables of one host record (the names the documentation lists)."""
    core = record["core_device"] or {}
    variables = {
        "aws_region": record["region"],
        "iot_thing_name": record["thing_name"],
        "iot_thing_arn": record["thing_arn"],
        "iot_thing_type": record["thing_type"],
        "iot_attributes": record["attributes"],
        "iot_thing_groups": record["thing_groups"],
        "greengrass_core_device": bool(core),
        "greengrass_status": core.get("status"),
        "greengrass_platform": core.get("platform"),
        "greengrass_architecture": core.get("architecture"),
        "greengrass_runtime": core.get("runtime"),
        "greengrass_core_version": core.get("core_version"),
        "greengrass_last_status_update": core.get("last_status_update"),
    }
    address = record["attributes"].get(address_attribute)
    if address:
        variables["ansible_host"] = address
    return variables


def checked_filters(filters):
    """{key: [accepted values]} of the `filters` option, or AnsibleError naming the key that is not a filter."""
    checked = {}
    for key, value in (filters or {}).items():
        if key != "thing_type" and not (key.startswith("attribute:") and len(key) > len("attribute:")):
            raise AnsibleError(
                f"aws_iot inventory: `filters` has the key {key!r}: expected thing_type or attribute:<name>"
            )
        values = value if isinstance(value, list) else [value]
        checked[key] = [str(item) for item in values]
    return checked


def matches(record, filters):
    for key, accepted in filters.items():
        if key == "thing_type":
            found = record["thing_type"]
        else:
            found = record["attributes"].get(key[len("attribute:") :])
        if found not in accepted:
            return False
    return True


def kept(record, statuses, include_things_without_core_device, filters):
    if not matches(record, filters):
        return False
    core = record["core_device"]
    if core is None:
        return include_things_without_core_device
    return core["status"] in statuses


class InventoryModule(AWSInventoryBase):
    NAME = "edgeml.greengrass.aws_iot"
    INVENTORY_FILE_SUFFIXES = ("aws_iot.yml", "aws_iot.yaml")

    def _checked_options(self):
        """(regions, filters) from the options, or a message naming the wrong one, before any AWS call."""
        regions = self.get_option("regions") or ([self.region] if self.region else [])
        if not regions:
            raise AnsibleError(
                "aws_iot inventory: no region to read: set `regions` (a list such as [eu-west-1]), `region` or the "
                "AWS_REGION environment variable"
            )
        for name in ("regions", "thing_groups"):
            wrong = [value for value in self.get_option(name) if not isinstance(value, str) or not value.strip()]
            if wrong:
                raise AnsibleError(f"aws_iot inventory: `{name}` has {wrong!r}: expected non-empty names")
        if not self.get_option("address_attribute"):
            raise AnsibleError("aws_iot inventory: `address_attribute` is empty: expected a thing attribute name")
        return regions, checked_filters(self.get_option("filters"))

    def _read(self, regions):
        thing_groups = self.get_option("thing_groups")
        read = {"hosts": {}, "group_parents": {}}
        for region in regions:
            # Plain clients: the module_utils calls retry as the collection's modules do (_retries.aws_retry).
            client, greengrass = self.client("iot", region=region), self.client("greengrassv2", region=region)
            try:
                found = region_inventory(client, greengrass, thing_groups, region)
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError, AnsibleAWSError) as error:
                self.fail_aws(f"aws_iot inventory: reading AWS IoT in {region} failed", error)
            for name in found["hosts"]:
                if name in read["hosts"]:
                    raise AnsibleError(
                        f"aws_iot inventory: thing {name} exists in {read['hosts'][name]['region']} and {region}: "
                        "hosts are named after their thing, so list one of these regions per inventory source"
                    )
            read["hosts"].update(found["hosts"])
            read["group_parents"].update(found["group_parents"])
        return read

    def _group(self, thing_group, parents):
        """The inventory group of a thing group, inside the group of its parent thing group (as in AWS IoT)."""
        group = self.inventory.add_group(self._sanitize_group_name(THING_GROUP_PREFIX + thing_group))
        parent = parents.get(thing_group)
        if parent:
            self.inventory.add_child(self._group(parent, parents), group)
        return group

    def _populate(self, read, filters):
        hosts, parents = read["hosts"], read["group_parents"]
        statuses = self.get_option("statuses")
        with_things = self.get_option("include_things_without_core_device")
        address_attribute = self.get_option("address_attribute")
        parent = self.get_option("parent_group")
        strict = self.get_option("strict")
        if parent:
            self.inventory.add_group(parent)
        for name in sorted(hosts):
            record = hosts[name]
            if not kept(record, statuses, with_things, filters):
                continue
            self.inventory.add_host(name, group=parent or None)
            variables = host_variables(record, address_attribute)
            for key, value in variables.items():
                self.inventory.set_variable(name, key, value)
            groups = [self._group(thing_group, parents) for thing_group in record["thing_groups"]]
            core = record["core_device"]
            groups.append("greengrass_v2" if core else "greengrass_no_core_device")
            if core:
                groups.append(f"greengrass_{core['status'].lower()}")
            for group in groups:
                self.inventory.add_child(self.inventory.add_group(group), name)
            self._set_composite_vars(self.get_option("compose"), variables, name, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), variables, name, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), variables, name, strict=strict)

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache=cache)
        regions, filters = self._checked_options()
        was_cached, read = self.get_cached_result(path, cache)
        if not was_cached:
            read = self._read(regions)
        self._populate(read, filters)
        self.update_cached_result(path, cache, read)
