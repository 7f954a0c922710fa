"""`traza demo`: a whole federation of real node processes on 127.0.0.1 playing the exchanges Traza exists for."""
