"""Loaded by every Python process started with this directory on PYTHONPATH (Ray's processes
inherit it): an audit hook appends to $AUDIT_LOG each attempt to reach an address other than
the loopback (connect, send, name lookup) or to listen on one (bind, the wildcard address
included) and, if $AUDIT_WATCH_DIR is set, each file created, written or renamed under that
directory. One line per event: pid, event, address or path, argv."""
import ipaddress
import os
import sys

LOG = os.environ.get("AUDIT_LOG")
WATCH = os.environ.get("AUDIT_WATCH_DIR")
NET_EVENTS = ("socket.connect", "socket.sendto", "socket.sendmsg")
LOOKUP_EVENTS = ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
#: events that create a file or directory: the index of that path in the event's arguments
CREATE_EVENTS = {"os.mkdir": 0, "os.rename": 1, "os.symlink": 1, "os.link": 1}


def loopback(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if host in (None, "", "localhost"):
        return True
    try:
        ip = ipaddress.ip_address(str(host).split("%")[0])
    except ValueError:  # a name other than localhost
        return False
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


def _watched(path) -> bool:
    if isinstance(path, int):  # a file descriptor
        return False
    return os.path.abspath(os.fsdecode(path)).startswith(WATCH + os.sep)


def _log(event, arg) -> None:
    with open(LOG, "a") as f:
        f.write(f"{os.getpid()} {event} {arg!r} {sys.argv[:2]!r}\n")


def _hook(event, args) -> None:
    if event in NET_EVENTS:
        if isinstance(args[-1], tuple) and not loopback(args[-1][0]):
            _log(event, args[-1])
    elif event == "socket.bind":  # "" is every interface here
        if isinstance(args[1], tuple) and (args[1][0] in ("", b"") or not loopback(args[1][0])):
            _log(event, args[1])
    elif event in LOOKUP_EVENTS:
        if not loopback(args[0]):
            _log(event, args[0])
    elif WATCH and event == "open":
        if (args[2] or 0) & WRITE_FLAGS and _watched(args[0]):
            _log(event, args[0])
    elif WATCH and event in CREATE_EVENTS:
        if _watched(args[CREATE_EVENTS[event]]):
            _log(event, args[CREATE_EVENTS[event]])


if LOG:
    sys.addaudithook(_hook)
