"""Livecart relay: the SFU: forwards RTP to viewers (WHEP), simulcast, NACK/RTX/PLI, cascades
between regions."""
