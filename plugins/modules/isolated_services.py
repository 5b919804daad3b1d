#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) linuxns.isolation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: isolated_services
short_description: Converge many isolated services of one owner in one task
version_added: 0.2.0
description:
  - Converges a list of services in one task, each run by the engine of
    M(linuxns.isolation.pid_namespace) (engine V(pid_namespace)) or
    M(linuxns.isolation.bwrap_sandbox) (engine V(bwrap)), with that module's options and the same
    behaviour per service (idempotency, check mode, diff, start verification, records).
  - Every item is validated first; a bad one (a name listed twice, an unknown engine, an option of the other
    engine, a name recorded by another owner) fails the task before anything changes, naming the service and
    the option.
  - The services are started one after another without waiting for each, and one loop watches them all
    through their start windows, so a first converge of many services costs about one start window, not one
    per service. No threads are used (forking from a threaded Python is unsafe).
  - A service that fails does not stop the others; the task fails afterwards, naming every failed service.
  - Each service records O(owner). With O(prune=true) the services recorded in O(state_dir) with the same
    owner that the list does not name are stopped and removed; services of another owner, or of none, are never
    touched.
options:
  services:
    description:
      - The services, each a mapping with V(name), V(engine), optional V(state) (V(started) (default),
        V(stopped), V(absent), V(restarted)) and the options of that engine's module (for example V(command),
        V(argv), V(env), V(restart), V(namespaces) for V(pid_namespace); V(unshare), V(mounts), V(profile) for
        V(bwrap)). Types are checked as that module would check them.
      - O(state_dir), O(owner), V(detach) (always V(true)), V(timeout), V(creates) and V(removes) cannot be
        set per service.
      - An item may change its V(engine); the service recorded under the other engine is then stopped and
        removed, and the new one started (the result's C(actions) starts with C(replace)). With V(stopped) or
        V(absent) the recorded service is stopped or removed whatever its engine.
    type: list
    elements: dict
    required: true
  owner:
    description:
      - Label recorded on every listed service (the O(linuxns.isolation.pid_namespace#module:owner) of the
        single-service modules); not part of the spec hash, so changing it does not restart a service.
      - A listed name recorded with another owner fails the task before anything changes.
      - A listed name recorded without an owner (started by a task that named none) is refused unless
        O(adopt_unowned=true).
      - Required with O(prune=true). Unset keeps each recorded owner.
    type: str
  prune:
    description:
      - Stop and remove the services recorded in O(state_dir) with owner O(owner) that O(services) does not name.
      - Never touches a service of another owner or of none.
    type: bool
    default: false
  adopt_unowned:
    description:
      - Take over listed services recorded without an owner, recording O(owner) on them (without a restart
        when their spec is unchanged). For playbooks that managed the same services with single-service tasks
        or an older M(linuxns.isolation.isolated_service) role before.
    type: bool
    default: false
  state_dir:
    description:
      - Absolute path of the directory holding the records, as O(linuxns.isolation.pid_namespace#module:state_dir).
      - Default C(/run/linuxns) as root, C($XDG_RUNTIME_DIR/linuxns) otherwise.
    type: path
notes:
  - Services are taken down (stopped, replaced, pruned) one after another before any start.
  - The per-service results carry each service's own C(changed); in diff mode every changed service shows its
    own before/after.
  - Warnings about host resources missing in check mode name the service.
author:
  - linuxns.isolation contributors (@linuxns)
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying target.
    support: full
    details:
      - Every service is planned as a real run would plan it; nothing is started, stopped, written or locked.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in C(check_mode)),
      when in diff mode.
    support: full
    details:
      - One diff per changed service (its spec before and after, C(env) values hidden).
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation
        indicates no change.
    support: full
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: linux
'''

EXAMPLES = r'''
- name: Converge the web tier
  linuxns.isolation.isolated_services:
    owner: web
    prune: true
    services:
      - name: web-api
        engine: pid_namespace
        argv: [/usr/bin/python3, -m, http.server, '8080']
        restart: on-failure
      - name: web-worker
        engine: bwrap
        command: /usr/local/bin/worker --queue default
        share_net: true
      - name: web-old
        state: absent
        engine: pid_namespace
'''

RETURN = r'''
services:
  description:
    - One result per listed service, in list order, with the keys a
      M(linuxns.isolation.pid_namespace) or M(linuxns.isolation.bwrap_sandbox) task returns for it (C(state),
      C(pid), C(service_pid), C(namespaces), C(spec_hash), C(started_at), C(log_path), C(restarts), C(owner), and
      for bwrap C(argv) and C(bwrap_version)), plus C(engine), C(changed), C(actions) and, for a failed one,
      C(failed) and C(msg).
  returned: always
  type: list
  elements: dict
  sample:
    - name: web-api
      engine: pid_namespace
      changed: true
      actions: [start]
      state: started
      owner: web
      pid: 4242
pruned:
  description: Names of the services of O(owner) that O(prune=true) stopped and removed.
  returned: always
  type: list
  elements: str
  sample: [web-legacy]
'''

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

# First of the engine: inside AnsiballZ it makes every later engine import compile once, not twice.
from ansible_collections.linuxns.isolation.plugins.module_utils import _zipload  # noqa: F401 pylint: disable=unused-import
from ansible_collections.linuxns.isolation.plugins.module_utils._errors import LinuxnsError, SpecError
from ansible_collections.linuxns.isolation.plugins.module_utils._many import converge_many


def _coerce(engine, name, params):
    """The item's options typed and checked as the engine's own module would (Ansible's validator)."""
    if engine == 'bwrap':
        from ansible_collections.linuxns.isolation.plugins.module_utils._bwrap_driver import argument_spec
        spec = argument_spec()
    else:
        from ansible_collections.linuxns.isolation.plugins.module_utils._spec import pid_namespace_argument_spec
        spec = pid_namespace_argument_spec()
    result = ArgumentSpecValidator(spec).validate(params)
    if not result.error_messages:
        return result.validated_parameters
    # Name the option that is wrong: each set option checked on its own.
    for key in sorted(params):
        if params[key] is None or key not in spec:
            continue
        alone = ArgumentSpecValidator({key: spec[key]}).validate({key: params[key]})
        if alone.error_messages:
            raise SpecError('services[%s].%s' % (name, key), params[key],
                            'is not valid (%s)' % '; '.join(alone.error_messages), 'fix this option of the service')
    raise SpecError('services[%s]' % name, None, 'has invalid options: %s' % '; '.join(result.error_messages),
                    'fix the options of this service')


def main():
    module = AnsibleModule(argument_spec=dict(
        services=dict(type='list', elements='dict', required=True),
        owner=dict(type='str'),
        prune=dict(type='bool', default=False),
        adopt_unowned=dict(type='bool', default=False),
        state_dir=dict(type='path'),
    ), supports_check_mode=True)
    try:
        result = converge_many(module.params, module.check_mode, coerce=_coerce)
    except LinuxnsError as exc:
        module.fail_json(msg=str(exc))
    for warning in result.pop('warnings_on_host', ()):
        module.warn(warning)
    if not module._diff:
        result.pop('diff', None)
        for service in result['services']:
            service.pop('diff', None)
    if result.pop('failed', False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
