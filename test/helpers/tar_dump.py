"""Dump a tar (optionally gzip) as JSON lines: an independent reader (Python's tarfile) for our writer.

Names and link targets are raw bytes, printed as hex; xattrs come from pax SCHILY.xattr records.
"""
import hashlib
import json
import sys
import tarfile

TYPES = {
    tarfile.REGTYPE: 'file', tarfile.AREGTYPE: 'file', tarfile.DIRTYPE: 'directory', tarfile.SYMTYPE: 'symlink',
    tarfile.LNKTYPE: 'hardlink', tarfile.CHRTYPE: 'char', tarfile.BLKTYPE: 'block', tarfile.FIFOTYPE: 'fifo',
}


def raw(text):
    return text.encode('utf-8', 'surrogateescape').hex()


with tarfile.open(sys.argv[1], 'r:*', encoding='utf-8', errors='surrogateescape') as archive:
    for member in archive:
        record = {
            'path': raw(member.name + ('/' if member.isdir() else '')),
            'type': TYPES.get(member.type, member.type.decode('latin1')),
            'mode': member.mode, 'uid': member.uid, 'gid': member.gid,
            'mtime': str(member.pax_headers.get('mtime', member.mtime)),
            'size': member.size, 'link': raw(member.linkname),
            'devmajor': member.devmajor, 'devminor': member.devminor,
            'uname': member.uname, 'gname': member.gname,
            'xattrs': {k[len('SCHILY.xattr.'):]: v.encode('utf-8', 'surrogateescape').hex()
                       for k, v in member.pax_headers.items() if k.startswith('SCHILY.xattr.')},
            'pax_keys': sorted(member.pax_headers.keys()),
        }
        if member.isreg():
            record['sha256'] = hashlib.sha256(archive.extractfile(member).read()).hexdigest()
        print(json.dumps(record))
