"""Pure parsers for the Bluetooth SIG health GATT characteristics (bytes in, frozen dataclasses out).

Nothing here does I/O or imports asyncio, bleak or bumble: sessions read and write characteristics and hand
the bytes to these functions; `to_reading` functions map the parsed values to `gateway.reading.Reading`.
"""
