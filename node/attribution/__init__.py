"""Attribution: which country, ASN and hoster served a URL (GeoIP and ASN
databases, the operator table) and which database versions placed each sighting."""
