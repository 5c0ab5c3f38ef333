from pydantic import BaseModel, Field


class Input(BaseModel):
    code: str = Field(pattern=r"^[0-9]{5}$")


class Output(BaseModel):
    score: float
