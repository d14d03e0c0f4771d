"""Identity from a Unix socket's peer: for users on the service's host, no token at all.

Invariant: over ``serve --socket PATH`` the caller is the Unix user the kernel says is at the
other end (``SO_PEERCRED``: a uid the peer cannot choose), never what the request says; an
``Authorization`` header there is ignored. Root and the service's own user are operators;
anyone else has the role ``server.socket_roles`` gives their name, else
``server.socket_default_role``; their team is their primary group's name::

    connect(PATH) ─> accept ─> getsockopt(SO_PEERCRED) ─> (pid, uid, gid)
                   ─> pwd/grp: user, primary group ─> Identity(user, team, role)
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from typing import TYPE_CHECKING, Any

from gridbridge.scheduler._access import Role, check_name

from ._rights import Identity, Refused

if TYPE_CHECKING:
    from gridbridge.config import ServerSettings

__all__ = ["PEER", "peer_credentials", "peer_identity"]

PEER = "socket"
"""The client host a socket connection is given (its port: the peer's uid)."""

_CREDS = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_credentials(sock: Any) -> tuple[int, int, int]:
    """The (pid, uid, gid) of the process at the other end of a Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDS.size)
    pid, uid, gid = _CREDS.unpack(raw)
    return pid, uid, gid


def peer_identity(uid: int, settings: ServerSettings) -> Identity:
    """Who the Unix user ``uid`` is to the service, or :class:`Refused` (401)."""
    try:
        entry = pwd.getpwuid(uid)
        user = check_name("user", entry.pw_name)
        team = check_name("team", grp.getgrgid(entry.pw_gid).gr_name)
    except (KeyError, ValueError):
        raise Refused(f"refused: uid {uid} has no usable user name on the service's host "
                      "(rule: a socket caller is the Unix user the kernel names)", 401) from None
    if uid in (0, os.getuid()):
        role = Role.OPERATOR
    else:
        role = Role(settings.socket_roles.get(user, settings.socket_default_role))
    return Identity(user, team, role, f"uid:{uid}")
