# Message framing (see framing.pyx).

cdef class FrameDecoder:
    cdef bytearray _buf        # received bytes; those before _pos are consumed
    cdef Py_ssize_t _pos       # offset in _buf of the next frame header
    cdef readonly Py_ssize_t max_frame_size  # largest payload accepted, in bytes
    cdef object _error         # None, or the message of the ProtocolError that poisoned us

    cdef int _poison(self, str message) except -1
