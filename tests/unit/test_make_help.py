# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""`make help` lists every make target the README names, and the README says how to install."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _read(name):
    with open(os.path.join(ROOT, name)) as handle:
        return handle.read()


def _readme_targets():
    return sorted(set(re.findall(r'\bmake (?:-s )?([a-z][a-z-]+)\b', _read('README.md'))))


@pytest.mark.skipif(shutil.which('make') is None, reason='needs make')
def test_make_help_lists_every_target_the_readme_names():
    targets = _readme_targets()
    assert {'site', 'test', 'collection', 'tarball', 'integration-engine', 'integration-targets'} <= set(targets)
    shown = subprocess.run(['make', '--no-print-directory', '-s', 'help'], cwd=ROOT, check=True,
                           stdout=subprocess.PIPE, universal_newlines=True).stdout
    listed = set(re.findall(r'^make (\S+)', shown, re.M))
    assert [target for target in targets if target not in listed] == []


def test_every_target_the_readme_names_exists_in_the_makefile():
    makefile = _read('Makefile')
    defined = set(re.findall(r'^([a-z][a-z-]+):', makefile, re.M))
    assert [target for target in _readme_targets() if target not in defined] == []


def test_readme_says_how_to_install_the_collection_for_own_playbooks():
    readme = _read('README.md')
    section = readme.split('## Use it in your own playbooks', 1)[1].split('\n## ', 1)[0]
    assert 'ansible-galaxy collection install "$(make -s tarball | tail -1)"' in section
    assert re.search(r'ansible-galaxy collection install /path/to/', section)
    assert 'linuxns.isolation.' in section and 'hosts:' in section
