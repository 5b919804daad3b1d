# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write a seccomp BPF program failing mkdir/mkdirat with EPERM (x86_64, aarch64) to argv[1]."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import platform
import struct
import sys

AUDIT_ARCH, (MKDIR, MKDIRAT) = {'x86_64': (0xC000003E, (83, 258)),
                                'aarch64': (0xC00000B7, (34, 34))}[platform.machine()]
LD_ABS, JEQ, RET = 0x20, 0x15, 0x06
ALLOW, EPERM = 0x7FFF0000, 0x00050000 | 1
PROGRAM = [(LD_ABS, 0, 0, 4), (JEQ, 1, 0, AUDIT_ARCH), (RET, 0, 0, ALLOW),
           (LD_ABS, 0, 0, 0), (JEQ, 2, 0, MKDIR), (JEQ, 1, 0, MKDIRAT),
           (RET, 0, 0, ALLOW), (RET, 0, 0, EPERM)]
with open(sys.argv[1], 'wb') as handle:
    handle.write(b''.join(struct.pack('<HBBI', *insn) for insn in PROGRAM))
