#!/usr/bin/env python3
"""Usage: check-plugin.py LIBS_DIR PLUGIN_DIR

A connector plugin takes the org.apache.kafka classes from the worker (plugin isolation
never loads them from the plugin dir), so a connector built against another Kafka may name
classes the worker's Kafka does not have (Debezium 3.6 names
org.apache.kafka.common.utils.Sanitizer, which Kafka 4.4 moved to ...utils.internals): the
connector then fails with NoClassDefFoundError only when a task starts. This finds such
references before that: every org/apache/kafka/... class named in the constant pools of the
plugin's classes must be in LIBS_DIR's jars or the plugin's own. Prints the missing ones
and exits 1 when there are any.
"""
import glob
import re
import sys
import zipfile

REF = re.compile(rb"org/apache/kafka/[A-Za-z0-9_/$]+")


def classes(jar):
    return {n[:-6] for n in jar.namelist() if n.endswith(".class")}


def main(libs_dir, plugin_dir):
    known = set()
    for path in glob.glob(f"{libs_dir}/*.jar") + glob.glob(f"{plugin_dir}/*.jar"):
        known |= classes(zipfile.ZipFile(path))
    missing = {}
    for path in glob.glob(f"{plugin_dir}/*.jar"):
        jar = zipfile.ZipFile(path)
        for name in jar.namelist():
            if not name.endswith(".class"):
                continue
            for ref in set(REF.findall(jar.read(name))):
                ref = ref.decode()
                if ref not in known:
                    missing.setdefault(ref, set()).add(name[:-6].replace("/", "."))
    for ref, users in sorted(missing.items()):
        print(f"  {ref.replace('/', '.')} (used by {', '.join(sorted(users)[:3])})")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
