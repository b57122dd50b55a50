"""Finds a BigchainDB event plugin and reads what it declares.

eventhost's python plugin uses this file two ways, so that a plugin is
found by one set of rules: imported into the embedded interpreter, to load
the plugin it runs; and run as a script (`python -c`) by the interpreter the
configuration names, to describe that interpreter and the plugin without
embedding anything (`eventhost check-config`, the version check before the
interpreter is started). It runs on whatever Python the environment has, so
it stays within what Python 3.8 offers.
"""

import importlib
import json
import os
import sys
import traceback

# Where BigchainDB (and Planetmint, its fork) look plugins up by name.
GROUPS = ("bigchaindb.events", "planetmint.events")

KNOWN_TYPES = "1 (BLOCK_VALID), 2 (BLOCK_INVALID) or 1 | 2"


class NotAPlugin(Exception):
    """The plugin cannot be found, or is not a plugin; the message says why."""


def _entry_points(group):
    from importlib import metadata

    found = metadata.entry_points()
    if hasattr(found, "select"):
        return list(found.select(group=group))
    return list(found.get(group, ()))  # Python 3.8 and 3.9: a dict of groups


def _package(entry_point):
    dist = getattr(entry_point, "dist", None)  # Python 3.10 and later
    if dist is None:
        return ""
    return ", package %s %s" % (dist.metadata["Name"], dist.version)


def find(entry_point=None, module=None):
    """The plugin (a module, or the object an entry point names) and a
    description of where it came from."""
    if module is not None:
        try:
            return importlib.import_module(module), "module %s" % module
        except ModuleNotFoundError as e:
            # Only the plugin's own module missing is a configuration error;
            # a module it imports missing is the plugin's failure.
            if e.name is None or not (module + ".").startswith(e.name + "."):
                raise
            raise NotAPlugin(
                "no module named %r in the environment of %s; install the "
                "plugin's package there, or add its directory to PYTHONPATH"
                % (module, sys.executable)
            ) from None
    names = {}
    for group in GROUPS:
        matches = []
        for ep in _entry_points(group):
            names.setdefault(group, set()).add(ep.name)
            if ep.name == entry_point and ep.value not in [m.value for m in matches]:
                matches.append(ep)
        if len(matches) > 1:
            raise NotAPlugin(
                "entry point %r of %s is declared more than once (%s); "
                "uninstall all but one of the packages declaring it"
                % (entry_point, group, ", ".join(m.value for m in matches))
            )
        if matches:
            ep = matches[0]
            kind = "object" if ":" in ep.value else "module"
            return ep.load(), "%s %s (entry point %s of %s%s)" % (
                kind, ep.value, ep.name, group, _package(ep)
            )
    known = "; ".join(
        "%s has %s" % (g, ", ".join(sorted(names[g]))) for g in GROUPS if g in names
    )
    raise NotAPlugin(
        "no entry point named %r in %s of the environment of %s (%s); install "
        "the plugin's package there (pip install ...), or set `python` to the "
        "environment that has it"
        % (entry_point, " or ".join(GROUPS), sys.executable, known or "both are empty")
    )


def declared(plugin, origin):
    """The plugin's `event_types` (None when absent: every event) and its `run`."""
    run = getattr(plugin, "run", None)
    if not callable(run):
        raise NotAPlugin("%s has no run(queue) function" % origin)
    types = getattr(plugin, "event_types", None)
    if types is not None and (isinstance(types, bool) or not isinstance(types, int)):
        raise NotAPlugin(
            "%s declares event_types = %r (a %s); it must be an int: %s"
            % (origin, types, type(types).__name__, KNOWN_TYPES)
        )
    return (None if types is None else int(types)), run


def _stand_in_eventhost(source):
    """Makes `import eventhost` work while the plugin is described: the
    module from its source (eventhost.py), without the Queue and Event
    classes the embedding host adds (a plugin does not use them on import).
    Without it, a plugin that imports eventhost at its top (for
    eventhost.ShutDown) could not be checked."""
    import types

    module = types.ModuleType("eventhost")
    module.__file__ = "<eventhost>/eventhost.py"
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    sys.modules["eventhost"] = module


def _describe(argv):
    """The interpreter, and the plugin named by argv (`entry_point NAME
    EVENTHOST_SOURCE` or `module NAME EVENTHOST_SOURCE`), as one line of JSON
    on standard output."""
    if sys.path and sys.path[0] == "":
        del sys.path[0]  # `-c` put the working directory first; an embedded interpreter does not
    import sysconfig

    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    out = {
        "executable": sys.executable,
        "version": list(sys.version_info[:3]),
        # The shared library of this build of Python, whose standard library
        # and extension modules go with it.
        "libpython": os.path.join(libdir, soname) if libdir and soname else None,
    }
    if argv:
        kind, name, eventhost = argv
        _stand_in_eventhost(eventhost)
        stdout, sys.stdout = sys.stdout, sys.stderr  # the plugin may print on import
        try:
            plugin, origin = find(**{kind: name})
            types, _ = declared(plugin, origin)
            out["plugin"] = {"origin": origin, "event_types": types}
        except NotAPlugin as e:
            out["plugin"] = {"error": str(e)}
        except BaseException as e:  # the plugin's own code failed on import
            out["plugin"] = {
                "error": "importing %s %r raised %s"
                % (kind.replace("_", " "), name, traceback.format_exception_only(type(e), e)[-1].strip())
            }
        finally:
            sys.stdout = stdout
    sys.stdout.write("\n" + json.dumps(out) + "\n")


if __name__ == "__main__":
    _describe(sys.argv[1:])
