"""Package sources of roles/nvidia_driver_cuda rendered for every supported OS and architecture.

Ubuntu and NVIDIA's servers are unreachable here, so each OS/arch is a local-connection
host whose `ansible_facts` are set to that OS; the role's own preflight (with a fake
sysfs holding one NVIDIA GPU) computes the sources, and its templates are rendered in
check + diff mode. The expected URLs and package names below are written out by hand.
"""

from __future__ import annotations

import pytest

from tests.roles.playbook_json import REPO_ROOT, localhost_inventory, run_playbook
from tests.roles.test_nvidia_driver_cuda_detection import NVIDIA_VGA, fake_sysfs

ROLE_TEMPLATES = REPO_ROOT / "roles" / "nvidia_driver_cuda" / "templates"
NVIDIA = "https://developer.download.nvidia.com/compute/cuda/repos"

# (distribution, version, codename, NVIDIA repo name, cuda-keyring version, toolkit to ask for)
SUPPORTED_OS = [
    ("Ubuntu", "18.04", "bionic", "ubuntu1804", "1.0-1", "11.7"),
    ("Ubuntu", "20.04", "focal", "ubuntu2004", "1.1-1", "11.7"),
    ("Ubuntu", "22.04", "jammy", "ubuntu2204", "1.1-1", "11.7"),
    ("Ubuntu", "24.04", "noble", "ubuntu2404", "1.1-1", "12.4"),
    ("Debian", "11", "bullseye", "debian11", "1.1-1", "11.7"),
    ("Debian", "12", "bookworm", "debian12", "1.1-1", "12.4"),
    ("Debian", "13", "trixie", "debian13", "1.1-1", "12.4"),
]
ARCHES = {"x86_64": ("x86_64", "amd64"), "aarch64": ("sbsa", "arm64")}

PLAYBOOK = f"""
- name: Render the role's sources as each OS would
  hosts: all
  gather_facts: false
  tasks:
    - name: Pretend to be the OS under test
      ansible.builtin.set_fact:
        ansible_facts: "{{{{ fake_facts }}}}"

    - name: Run the role's preflight
      ansible.builtin.include_role:
        name: edgeml.greengrass.nvidia_driver_cuda
        tasks_from: preflight.yml
        public: true

    - name: Render the Debian non-free sources
      ansible.builtin.template:
        src: {ROLE_TEMPLATES}/debian-nonfree.sources.j2
        dest: "{{{{ out_dir }}}}/{{{{ inventory_hostname }}}}.sources"
        mode: "0644"
      check_mode: true
      diff: true
      when:
        - __nvidia_driver_cuda_effective_source == 'distribution'
        - __nvidia_driver_cuda_debian_components | length > 0

    - name: Render the nouveau blacklist
      ansible.builtin.template:
        src: {ROLE_TEMPLATES}/blacklist-nouveau.conf.j2
        dest: "{{{{ out_dir }}}}/{{{{ inventory_hostname }}}}.conf"
        mode: "0644"
      check_mode: true
      diff: true

    - name: Report
      ansible.builtin.debug:
        msg:
          source: "{{{{ __nvidia_driver_cuda_effective_source }}}}"
          repo_url: "{{{{ __nvidia_driver_cuda_repo_url }}}}"
          keyring_url: "{{{{ __nvidia_driver_cuda_keyring_url }}}}"
          driver_packages: "{{{{ __nvidia_driver_cuda_driver_packages }}}}"
          toolkit_packages: "{{{{ __nvidia_driver_cuda_toolkit_packages }}}}"
          cuda_version: "{{{{ nvidia_driver_cuda_cuda_version }}}}"
"""


def host_name(version: str, distro: str, arch: str, source: str) -> str:
    return f"{distro.lower()}{version.replace('.', '')}-{arch}-{source}"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("nvidia_repos")
    sysfs = fake_sysfs(tmp_path / "sys", {"0000:01:00.0": NVIDIA_VGA})
    hosts = {}
    for distro, version, codename, _repo, _keyring, toolkit in SUPPORTED_OS:
        for arch in ARCHES:
            facts = {
                "distribution": distro,
                "distribution_version": version,
                "distribution_major_version": version.split(".")[0],
                "distribution_release": codename,
                "os_family": "Debian",
                "architecture": arch,
            }
            for source in ("nvidia", "auto"):
                hosts[host_name(version, distro, arch, source)] = {
                    "fake_facts": facts,
                    "nvidia_driver_cuda_source": source,
                    "nvidia_driver_cuda_toolkit_version": toolkit,
                    "nvidia_driver_cuda_sysfs_root": str(sysfs),
                    "out_dir": str(tmp_path),
                }
    playbook = tmp_path / "render.yml"
    playbook.write_text(PLAYBOOK)
    run = run_playbook(playbook, localhost_inventory(tmp_path, hosts), "--forks", "6")
    assert run.returncode == 0, run.describe()
    return run


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize(("distro", "version", "codename", "repo", "keyring", "toolkit"), SUPPORTED_OS)
def test_nvidia_repository_urls_and_packages(rendered, distro, version, codename, repo, keyring, toolkit, arch):
    report = rendered.results("Report")[host_name(version, distro, arch, "nvidia")]["msg"]
    repo_url = f"{NVIDIA}/{repo}/{ARCHES[arch][0]}/"
    assert report["source"] == "nvidia"
    assert report["repo_url"] == repo_url
    assert report["keyring_url"] == f"{repo_url}cuda-keyring_{keyring}_all.deb"
    assert report["driver_packages"] == ["cuda-drivers-550"]
    assert report["toolkit_packages"] == [f"cuda-toolkit-{toolkit.replace('.', '-')}"]
    assert report["cuda_version"] == toolkit


# The distribution's own driver packages and CUDA toolkit, per OS (architecture-independent unless noted).
DISTRIBUTION = {
    ("Ubuntu", "18.04"): (["nvidia-driver-550", "nvidia-utils-550"], "9.1"),
    ("Ubuntu", "20.04"): (["nvidia-driver-550", "nvidia-utils-550"], "10.1"),
    ("Ubuntu", "22.04"): (["nvidia-driver-550", "nvidia-utils-550"], "11.5"),
    ("Ubuntu", "24.04"): (["nvidia-driver-550", "nvidia-utils-550"], "12.0"),
    ("Debian", "11"): (["nvidia-driver", "nvidia-smi", "firmware-misc-nonfree", "linux-headers-{kernel_arch}"], "11.2"),
    ("Debian", "12"): (["nvidia-driver", "nvidia-smi", "firmware-misc-nonfree", "linux-headers-{kernel_arch}"], "11.8"),
    ("Debian", "13"): (["nvidia-driver", "nvidia-smi", "firmware-misc-nonfree", "linux-headers-{kernel_arch}"], "12.4"),
}


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize(("distro", "version", "codename", "repo", "keyring", "toolkit"), SUPPORTED_OS)
def test_auto_source_per_os(rendered, distro, version, codename, repo, keyring, toolkit, arch):
    """Ubuntu takes NVIDIA's repository; Debian its own non-free packages (CUDA 11, which MXNet 1.9.1 needs)."""
    host = host_name(version, distro, arch, "auto")
    report = rendered.results("Report")[host]["msg"]
    sources = rendered.results("Render the Debian non-free sources")[host]
    if distro == "Ubuntu":
        assert report["source"] == "nvidia"
        assert report["repo_url"] == f"{NVIDIA}/{repo}/{ARCHES[arch][0]}/"
        assert sources.get("skipped") is True
        return
    packages, cuda = DISTRIBUTION[(distro, version)]
    assert report["source"] == "distribution"
    assert report["driver_packages"] == [p.format(kernel_arch=ARCHES[arch][1]) for p in packages]
    assert report["toolkit_packages"] == ["nvidia-cuda-toolkit"]
    assert report["cuda_version"] == cuda
    after = sources["diff"][0]["after"] if isinstance(sources["diff"], list) else sources["diff"]["after"]
    components = "contrib non-free non-free-firmware" if version in ("12", "13") else "contrib non-free"
    assert after.splitlines()[-5:] == [
        "Types: deb",
        "URIs: http://deb.debian.org/debian",
        f"Suites: {codename} {codename}-updates",
        f"Components: {components}",
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg",
    ]
    assert after.startswith("#")  # ansible_managed header


def test_distribution_packages_on_ubuntu_follow_the_branch(tmp_path):
    """Ubuntu's own packages are named after the branch; checked on one OS with another branch."""
    sysfs = fake_sysfs(tmp_path / "sys", {"0000:01:00.0": NVIDIA_VGA})
    facts = {
        "distribution": "Ubuntu",
        "distribution_version": "22.04",
        "distribution_major_version": "22",
        "distribution_release": "jammy",
        "os_family": "Debian",
        "architecture": "x86_64",
    }
    playbook = tmp_path / "render.yml"
    playbook.write_text(PLAYBOOK)
    inventory = localhost_inventory(
        tmp_path,
        {
            "jammy": {
                "fake_facts": facts,
                "nvidia_driver_cuda_source": "distribution",
                "nvidia_driver_cuda_driver_branch": "535",
                "nvidia_driver_cuda_sysfs_root": str(sysfs),
                "out_dir": str(tmp_path),
            }
        },
    )
    run = run_playbook(playbook, inventory)
    assert run.returncode == 0, run.describe()
    report = run.results("Report")["jammy"]["msg"]
    assert report["driver_packages"] == ["nvidia-driver-535", "nvidia-utils-535"]
    assert report["cuda_version"] == "11.5"


def test_nouveau_blacklist_rendered(rendered):
    result = rendered.results("Render the nouveau blacklist")["debian12-x86_64-auto"]
    after = result["diff"][0]["after"] if isinstance(result["diff"], list) else result["diff"]["after"]
    assert "\nblacklist nouveau\noptions nouveau modeset=0\n" in after


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (
            {"distribution": "CentOS", "distribution_version": "9", "distribution_major_version": "9"},
            "this host is CentOS 9 on x86_64",
        ),
        (
            {"distribution": "Ubuntu", "distribution_version": "23.10", "distribution_major_version": "23"},
            "this host is Ubuntu 23.10 on x86_64",
        ),
        (
            {"distribution": "Debian", "distribution_version": "12", "distribution_major_version": "12",
             "architecture": "armv7l"},
            "this host is Debian 12 on armv7l",
        ),
    ],
)  # fmt: skip
def test_unsupported_os_or_arch_fails_in_preflight(tmp_path, facts, expected):
    playbook = tmp_path / "render.yml"
    playbook.write_text(PLAYBOOK)
    inventory = localhost_inventory(
        tmp_path, {"odd": {"fake_facts": {"architecture": "x86_64", **facts}, "out_dir": str(tmp_path)}}
    )
    run = run_playbook(playbook, inventory)
    assert run.returncode != 0
    assert any(expected in m and "supports Ubuntu 18.04/20.04/22.04/24.04" in m for m in run.failure_messages())


def test_cuda_11_on_a_cuda_12_only_repository_fails_in_preflight(tmp_path):
    sysfs = fake_sysfs(tmp_path / "sys", {"0000:01:00.0": NVIDIA_VGA})
    facts = {
        "distribution": "Ubuntu",
        "distribution_version": "24.04",
        "distribution_major_version": "24",
        "architecture": "x86_64",
    }
    playbook = tmp_path / "render.yml"
    playbook.write_text(PLAYBOOK)
    inventory = localhost_inventory(
        tmp_path,
        {"noble": {"fake_facts": facts, "nvidia_driver_cuda_sysfs_root": str(sysfs), "out_dir": str(tmp_path)}},
    )
    run = run_playbook(playbook, inventory)
    assert run.returncode != 0
    assert any("NVIDIA's ubuntu2404 repository has no CUDA 11.7" in m for m in run.failure_messages()), run.describe()


def test_check_mode_rendering_wrote_no_files(rendered, tmp_path_factory):
    """The templates were rendered in check mode: nothing may land in the output directory."""
    assert rendered.results("Render the nouveau blacklist")["debian12-x86_64-auto"]["changed"] is True
    written = list(tmp_path_factory.getbasetemp().glob("nvidia_repos*/*.sources"))
    written += list(tmp_path_factory.getbasetemp().glob("nvidia_repos*/*.conf"))
    assert written == []
