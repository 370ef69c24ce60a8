"""The Redis keys of seed 002, named in one place.

Every key the relay writes is one of these, and every one is written with an
expiry, so an abandoned session disappears by itself.
"""

from __future__ import annotations


def session(sid: str) -> str:  # HASH name, code (a random salt: no function of the code), owner.id, ip
    return f"session:{sid}"


def session_name(name: str) -> str:  # -> session id
    return f"session:{name}"


def files(sid: str) -> str:  # SET of file ids (the names travel sealed, in the manifest)
    return f"files:{sid}"


def file(sid: str, filename: str) -> str:  # HASH name (the file id), size, owner.id
    return f"files:{sid}:{filename}"


def created_sessions(ip: str) -> str:  # -> the session id this IP has open
    return f"created.sessions:{ip}"


def access_attempts(sid: str, ip: str) -> str:  # number of join attempts
    return f"access.attempts:{sid}:{ip}"


def joiners(sid: str) -> str:  # SET of the addresses that tried to join: its access.attempts keys (68a (3))
    return f"access.joiners:{sid}"


def joined_names(ip: str) -> str:  # SET of session names this IP tried and was not let in at
    return f"joined.names:{ip}"


CALLS = "calls"  # SET, expires after 1 second: the call-rate window


def receivers(sid: str) -> str:  # SET of the receiver ids that joined the session
    return f"session.receivers:{sid}"


def handshake(sid: str, uid: str) -> str:  # HASH: one receiver's key exchange with the sender
    return f"session.receiver:{sid}:{uid}"


def joined(sid: str) -> str:  # SET of every receiver id that joined, refused ones too (68a (3))
    return f"session.joined:{sid}"


def refreshed(sid: str) -> str:  # set while the session's requests' keys were pushed back lately (68a (2))
    return f"session.refreshed:{sid}"


def file_reqs(sid: str) -> str:  # SET of requested file names
    return f"file.reqs:{sid}"


def file_req_users(sid: str, filename: str) -> str:  # SET of user ids requesting it
    return f"file.reqs:{sid}:{filename}"


def pending(sid: str) -> str:  # ZSET "<user id> <file id>" (score 0): asked, not answered yet (69a (2))
    return f"file.reqs.pending:{sid}"


def answered(uid: str) -> str:  # ZSET "<file id> <request id>" (score 0): answered, not finished (69a (2))
    return f"file.reqs.answered:{uid}"


def file_req(sid: str, filename: str, uid: str) -> str:  # the requester's public key (+ first chunk, MAC)
    return f"file.req:{sid}:{filename}:{uid}"


def file_req_ackn(sid: str, filename: str, uid: str) -> str:  # -> request id
    return f"file.req.ackn:{sid}:{filename}:{uid}"


def request_users(rid: str) -> str:  # SET of user ids in a request
    return f"file.req.users:{rid}"


def sender_requests(uid: str) -> str:  # SET of request ids
    return f"file.reqs.sender:{uid}"


def receiver_requests(uid: str) -> str:  # SET of request ids
    return f"file.reqs.receiver:{uid}"


def queued_requests(uid: str) -> str:  # SET of the sender's request ids that may hold chunks (63b (1))
    return f"file.reqs.queued:{uid}"


def prep(rid: str) -> str:  # HASH filename, public.key, amount.of.chunks (+ first chunk, MAC)
    return f"file.req.prep:{rid}"


def ready(rid: str) -> str:  # "true" once the receiver checked the answer: chunks may flow
    return f"file.req.ready:{rid}"


def chunks(rid: str) -> str:  # LIST "<chunk.nr>@<iv>@<chunk>", left in, right out
    return f"file.req.chunks:{rid}"


def last_chunk(rid: str) -> str:  # the last chunk number queued
    return f"file.req.last.chunk:{rid}"
