# -*- coding: utf-8 -*-

# Copyright (c) 2026 edgeml.greengrass maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Filters for the inventory checks site.yml makes across the whole fleet before anything is written.

Documentation: aws_service_regions.yml and hosts_with_value.yml beside this file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

try:
    import botocore.session

    HAS_BOTOCORE = True
except ImportError:
    HAS_BOTOCORE = False


def aws_service_regions(service):
    """Every region, in every partition, where botocore's endpoint data says the service is offered."""
    if not HAS_BOTOCORE:
        raise AnsibleFilterError("aws_service_regions needs the Python library botocore on the controller")
    session = botocore.session.get_session()
    if service not in session.get_available_services():
        raise AnsibleFilterError("aws_service_regions: {0!r} is not an AWS service botocore knows".format(service))
    regions = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions(service, partition_name=partition))
    return sorted(regions)


def hosts_with_value(hosts, hostvars, variable, value):
    """The hosts among ``hosts`` whose ``variable`` (their inventory hostname when unset) equals ``value``."""
    found = []
    for host in hosts:
        host_vars = hostvars[host]
        own = host_vars[variable] if variable in host_vars else host
        if own == value:
            found.append(host)
    return found


class FilterModule(object):
    def filters(self):
        return {"aws_service_regions": aws_service_regions, "hosts_with_value": hosts_with_value}
